"""gunicorn settings for the back office: ``gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'``.

Workers and threads come from the environment (WEB_WORKERS, WEB_THREADS, WEB_BIND; config.py
documents them). Each worker builds its own app: ``preload_app`` stays off, so no database
connection or sweep timer thread is ever shared across a fork. Every worker starts the
in-process sweep timer when SWEEP_INTERVAL_SECONDS > 0, but only the holder of the sweep's lease
(a row in job_run, claimed by a conditional UPDATE) sweeps: one place at a time.
"""

import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
proc_name = "wuye"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The app writes one line per request itself (ops/request_log.py: request id, user id, status,
# duration); gunicorn's access log would repeat it without the user.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# X-Forwarded-* are the app's to judge (TRUSTED_PROXIES → ProxyFix), never gunicorn's: with
# TRUSTED_PROXIES=0 a client must not be able to claim HTTPS through a header.
# No runtime control socket (gunicornc): one per user by default, shared by every instance.
control_socket_disable = True
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
# Bounded requests: a slow client cannot hold a worker's thread with an endless header.
limit_request_line = 8190
limit_request_fields = 100
