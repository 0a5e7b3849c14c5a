"""The job service over HTTP: ``create_app(settings)`` (FastAPI); see docs/service.md."""
