"""Demo traffic for docker-compose.yml: one request a second to the demo
service (tests/servers/http_app.py), cycling through its routes."""
import time
import urllib.error
import urllib.request

PATHS = ["/hello", "/chunked", "/missing", "/status/500", "/proxy"]
i = 0
while True:
    time.sleep(1)
    url = "http://127.0.0.1:8080" + PATHS[i % len(PATHS)]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError):
        pass  # 4xx/5xx are part of the demo; a refused connection is retried
    i += 1
