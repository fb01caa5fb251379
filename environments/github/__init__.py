"""Everything the portal says to and hears from GitHub: its REST client (client), what a pull
request is told (statuses), the webhook (webhooks: signatures, deliveries, pull request events),
what a delivery says (events) and the commands in a pull request's comments (commands)."""
