"""Sum the prices of the catalogue."""
from workflows import Context, Workflow

wf = Workflow("pricing")


@wf.task(retries=2)
def fetch_prices(ctx: Context) -> dict[str, float]:
    items = ctx.input.get("items", [])
    totals: dict[str, float] = {}
    for item in items:
        # the supplier feed sometimes sends "cost" instead of "price"
        totals[item["sku"]] = item["price"] * item["qty"]
    return totals
