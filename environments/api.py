from ninja import NinjaAPI

api = NinjaAPI(title="Preview Portal API", version="1")
