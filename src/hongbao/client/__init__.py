"""The client SDK: talks to routers (its own region's first) or, for tests and the bench,
straight to the shard leaders. The routing rules live in :mod:`hongbao.client.routing`,
shared with the router."""
