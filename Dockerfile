# One image for every role: `exchange matcher`, `exchange gateway`, `exchange up`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY exchange ./exchange
COPY gateway ./gateway
COPY loadtest ./loadtest
COPY bench ./bench
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 exchange \
    && mkdir -p /data /secrets && chown exchange /data /secrets && chmod 0700 /data /secrets
USER exchange
# /secrets holds the key that seals API secrets at rest: kept apart from the data volume.
ENV EXCHANGE_SECRETS_KEY_FILE=/secrets/secrets-key
VOLUME ["/data", "/secrets"]
EXPOSE 8080
ENTRYPOINT ["exchange"]
CMD ["up", "--data-dir", "/data", "--host", "0.0.0.0", "--port", "8080"]
