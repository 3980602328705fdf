"""The web operations console (``hongbao console``): an aiohttp server and its page."""
