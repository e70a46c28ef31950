"""Object storage (S3 API: AWS S3, MinIO, or the embedded moto server)."""
