#!/bin/sh
set -x
curl -s https://example.com/feed.json -o /tmp/feed.json
jq '.items[]' /tmp/feed.json
