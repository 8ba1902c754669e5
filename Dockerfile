FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mcp_gateway ./mcp_gateway
COPY configs ./configs
RUN pip install --no-cache-dir . && useradd --system --uid 10001 gateway
USER gateway
EXPOSE 8080
# Bind to all interfaces inside the container; the config's own host is for local runs.
ENTRYPOINT ["mcp-gateway"]
CMD ["serve", "--config", "/app/configs/example.yaml", "--host", "0.0.0.0"]
