"""Write the API description to openapi/openapi.json (a test fails when it is stale).

Usage: python scripts/export_openapi.py
"""

from app.kit.openapi import export_openapi
from app.kit.settings import Settings
from app.main import create_app

if __name__ == "__main__":
    path = export_openapi(create_app(Settings()))
    print(f"wrote {path}")
