"""The Telegram (and console) side: commands, rendering and alert delivery."""
