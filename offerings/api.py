from ninja import Router

router = Router(tags=["offerings"])
sponsors_router = Router(tags=["sponsors"])
