"""A bounded client load against the VIP, run in a client network namespace by the HA tests:
``python tests/vip_client.py VIP PORT TOKEN OUT STOP_FILE [SECONDS [WORKERS [fresh]]]``.

WORKERS (2) workers send short synthesis requests until STOP_FILE appears (or SECONDS pass,
or 20 000 requests each): eight texts over and over (mostly cache hits), or with ``fresh``
a new text each time, so every request is synthesized.  A request that fails is retried
once after RETRY_AFTER s (the 3 s failover bound).  A 429 (over the rate limit, or the queue
full) is flow control, not a failure: the client waits Retry-After and sends again (at most
BUSY_RESENDS times), as a well-behaved client does, without using up its retry.  OUT gets
one JSON row per request: [time, worker, attempts, status, node, what each failed attempt
got (an HTTP status with the node, or the exception), started].
"""

import http.client
import json
import os
import sys
import threading
import time

RETRY_AFTER = 3.0
# Long enough for a request that a slow runner synthesizes behind another: a slow answer is
# not the failure this client is here to see.
TIMEOUT = 5.0
BUSY_RESENDS = 10


def once(vip: str, port: int, token: str, text: str) -> tuple[int, str | None]:
    """One request; a 429 is sent again after its Retry-After."""
    for _ in range(BUSY_RESENDS):
        conn = http.client.HTTPConnection(vip, port, timeout=TIMEOUT)
        try:
            body = json.dumps({"text": text}).encode()
            headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
            conn.request("POST", "/v1/tts", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 429:
                return response.status, response.getheader("X-Node")
            time.sleep(float(response.getheader("Retry-After") or 1))
        finally:
            conn.close()
    return 429, None


def main() -> None:
    vip, port, token, out, stop_file = sys.argv[1:6]
    deadline = time.time() + (float(sys.argv[6]) if len(sys.argv) > 6 else 150)
    workers = int(sys.argv[7]) if len(sys.argv) > 7 else 2
    fresh = len(sys.argv) > 8 and sys.argv[8] == "fresh"
    run = os.getpid() % 1000  # fresh texts differ from one client run to the next
    lock = threading.Lock()
    results: list[list[object]] = []

    def worker(w: int) -> None:
        i = 0
        while time.time() < deadline and i < 20000:
            try:
                open(stop_file).close()
                return
            except OSError:
                pass
            text = f"请{run}{w}组第{i}号到窗口。" if fresh else f"第{i % 8}号窗口请准备。"
            attempts, status, node, why = 0, None, None, []
            started = time.time()
            for attempts in (1, 2):
                try:
                    status, node = once(vip, int(port), token, text)
                    if status == 200:
                        break
                    why.append(f"{status} from {node} at {time.time():.2f}")
                except OSError as e:
                    status, node = None, None
                    why.append(f"{type(e).__name__}: {e} at {time.time():.2f}")
                if attempts == 1:
                    time.sleep(RETRY_AFTER)
            with lock:
                results.append([time.time(), w, attempts, status, node, why, started])
            i += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
