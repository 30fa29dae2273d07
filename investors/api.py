from ninja import Router

router = Router(tags=["investors"])
registration_router = Router(tags=["auth"])
