"""Isotope settings, read from the environment.

Variables: ``DATABASE_URL`` (default: SQLite under ``var/``), ``REDIS_URL``,
``SECRET_KEY``, ``ALLOWED_HOSTS`` (comma separated), ``ISOTOPE_DEBUG`` (``1`` for
development). Production (``ISOTOPE_DEBUG`` unset) requires ``SECRET_KEY`` and turns on
HTTPS-only cookies, HSTS and the SSL redirect; development generates a secret once into
``var/secret_key``.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ISOTOPE_VAR", BASE_DIR / "var"))


DEBUG = env_bool("ISOTOPE_DEBUG")


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production settings need it in the environment "
            "(or set ISOTOPE_DEBUG=1 for development)."
        )
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if not DEBUG else "*")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "axes",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "portal",
    "portal.identity",
    "tenants",
    "compute",
    "monitoring",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (portal.csp, CONTENT_SECURITY_POLICY).
    "portal.csp.CSPMiddleware",
    "portal.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the browser's Accept-Language (or the switch's cookie) for everyone,
    # then, once the user is known, their stored choice (UserLanguageMiddleware).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.middleware.RequestContextMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # After authentication: sessions that a 2FA requirement applies to go to enrolment.
    "portal.identity.middleware.SecondFactorRequiredMiddleware",
    # Last, as django-axes asks: turns a sign-in lockout into the 429 login page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
                "monitoring.context_processors.notifications",
            ],
            # ``|localized``: stored messages in the reader's language (portal.texts).
            "builtins": ["portal.text_tags"],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'isotope.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, with its batches sized for values sent apart (portal/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "portal.postgresql"
# PostgreSQL connection pool per process (psycopg_pool, Django's "pool" option): with
# ASGI every request runs in a thread of its own, so persistent connections cannot be
# reused; a pool hands the same few connections from request to request instead of
# opening one per request. ISOTOPE_DB_POOL_SIZE = the most a process keeps (0: off).
ISOTOPE_DB_POOL_SIZE = int(os.environ.get("ISOTOPE_DB_POOL_SIZE", "0"))
# A web process collects its young objects after this many new ones (Python: 700);
# 0 leaves Python's default (portal/asgi.py, bench/README.md "accept_cpu").
ISOTOPE_WEB_GC_THRESHOLD = int(os.environ.get("ISOTOPE_WEB_GC_THRESHOLD", "20000"))
if ISOTOPE_DB_POOL_SIZE > 0 and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": ISOTOPE_DB_POOL_SIZE,
        "timeout": float(os.environ.get("ISOTOPE_DB_POOL_TIMEOUT", "10")),
    }
# PostgreSQL plans a statement once per connection instead of on every execution: the
# values travel apart from the SQL (server-side binding) and a statement run
# ISOTOPE_DB_PREPARE times on a connection is prepared there (psycopg's threshold; its
# default 5). "off": values inlined client-side and nothing prepared (Django's default;
# for a PgBouncer in transaction mode that cannot keep prepared statements).
ISOTOPE_DB_PREPARE = os.environ.get("ISOTOPE_DB_PREPARE", "5").strip().lower()
if ISOTOPE_DB_PREPARE != "off" and not ISOTOPE_DB_PREPARE.isdecimal():
    raise ImproperlyConfigured(
        f"ISOTOPE_DB_PREPARE={ISOTOPE_DB_PREPARE!r}: give how many runs of a statement on a "
        "connection before PostgreSQL prepares it (a whole number, 0 = at once), or off"
    )
if ISOTOPE_DB_PREPARE != "off" and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(ISOTOPE_DB_PREPARE)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Concurrent Celery workers and the web process share the file: wait, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "portal.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "isotope",
    },
    # The base layout's fragments that depend only on what their key names (the
    # language, the tenant's slug and name, the role, the page): rendered once per
    # process and key (``{% cache ... using="fragments" %}`` in templates/base.html).
    # Nothing to invalidate: a changed input is another key. Per process, no round trip.
    "fragments": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "isotope-fragments",
        "TIMEOUT": 3600,
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
}

# ``pubsub`` publishes a group message once and lets each process's subscription fan it
# out (far cheaper with many sockets per group); ``core`` is the classic list-based layer.
_LAYERS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _LAYERS[os.environ.get("ISOTOPE_CHANNEL_LAYER", "pubsub")],
        # redis-py 8 reads with a 5 s socket timeout by default, the same as the layer's
        # 5 s BZPOPMIN: an idle consumer's receive then races it and crashes the socket.
        # Redis pub/sub channels are server-wide, not per database: processes that share
        # a Redis server but must not hear each other (the test suite's xdist workers,
        # tests/parallel.py) set ISOTOPE_CHANNEL_PREFIX apart.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": os.environ.get("ISOTOPE_CHANNEL_PREFIX", "isotope:ch"),
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes refuses sign-ins (web and admin) that are locked out before the password
# is even checked; it must come first.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# The portal speaks these; the catalogue is locale/zh_Hans/LC_MESSAGES/django.po
# (templates, Python) and djangojs.po (static/js through JavaScriptCatalog).
LANGUAGES = [
    ("en", "English"),
    ("zh-hans", "简体中文"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "isotope_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# What a page may load and run (django-csp; README "Content-Security-Policy"). Scripts
# come from our own files only: no inline <script> or on...= handler runs, so an escaping
# mistake cannot become script. A page that must inline one gives it request.csp_nonce
# (NONCE: the header names it only on pages that used it). Styles allow 'unsafe-inline':
# style="" attributes are all over the templates and vendor code (Bootstrap, Chart.js,
# noVNC, Swagger UI) sets them; CSS cannot run script. connect-src 'self' covers the
# same-origin ws:/wss: of /ws/ and the console (CSP Level 3, as browsers implement it).
# form-action also gets the SSO provider's origins (portal.csp).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
# More origins a form's redirects may reach (portal.csp.form_action_origins): an SSO
# provider that sends the browser on from its issuer's origin to another one.
ISOTOPE_CSP_FORM_ACTION = env_list("ISOTOPE_CSP_FORM_ACTION")
if not DEBUG and env_bool("ISOTOPE_HTTPS", True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health checks (load balancers, Kubernetes probes) speak plain HTTP to the process.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Reverse proxies whose X-Forwarded-For is believed (client address for audit, throttles
# and sign-in lockouts); anyone else's header is ignored.
ISOTOPE_TRUSTED_PROXIES = env_list("ISOTOPE_TRUSTED_PROXIES")

# --- Sign-in lockout (django-axes) ------------------------------------------------------
# Failed sign-ins are counted per username and per client address, in PostgreSQL (every
# web process sees them; staff list and lift them in Django admin, "Access attempts").
# After ISOTOPE_LOGIN_FAILURE_LIMIT failures, either one is locked out until
# ISOTOPE_LOGIN_COOLOFF_MINUTES pass without another failure.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = int(os.environ.get("ISOTOPE_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("ISOTOPE_LOGIN_COOLOFF_MINUTES", "15")))
# A success must not clear the address's count: an attacker's own account would reset it.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "portal.middleware.client_ip"
AXES_LOCKOUT_CALLABLE = "portal.views.login_locked_out"
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins: the audit log is the record
AXES_ENABLE_ADMIN = False  # tenants.admin registers an audited view of the attempts
AXES_USERNAME_CALLABLE = "portal.identity.accounts.axes_username"

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.AutoSchema",
    # JSON only: the API's bodies are nested objects that forms cannot express.
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Cache-backed (Redis) rates of portal.api.throttles: failed token authentications
    # per client address, console tickets per user (page and API together).
    "DEFAULT_THROTTLE_RATES": {
        "token_failure": os.environ.get("ISOTOPE_THROTTLE_TOKEN_FAILURES", "10/min"),
        "console_ticket": os.environ.get("ISOTOPE_THROTTLE_CONSOLE_TICKETS", "30/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Isotope API",
    "DESCRIPTION": "Virtual machines and Kubernetes workloads under one tenant model.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Request bodies get their own components (with minLength, required, no read-only
    # fields); a PATCH body is validated whole, so its required fields stay required.
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_SPLIT_PATCH": False,
}

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
# kombu's Redis transport with one client per channel (portal/broker.py), for plain
# redis:// URLs; any other scheme keeps kombu's own transport for it.
CELERY_BROKER_TRANSPORT = "portal.broker:Transport" if REDIS_URL.startswith("redis://") else None
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task taken by a worker that then dies (kill -9, power loss) goes back to its queue
# after this many seconds (Redis broker). It must exceed the longest task (a migration,
# an image import, a backup export): a task still running after it is delivered twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("ISOTOPE_BROKER_VISIBILITY_TIMEOUT", "3600")),
}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Hosts whose tasks go to their own queue, libvirt.<host name> (comma separated, "*" for
# every host; compute/queues.py): a worker near each host consumes its queue.
ISOTOPE_HOST_QUEUES = os.environ.get("ISOTOPE_HOST_QUEUES", "")
CELERY_TASK_ROUTES = (
    "compute.queues.route_host_task",
    {
        # Needs no hypervisor; on ``libvirt`` it would wait behind the provisions it sends
        # (compute/services/dispatch.py). An exact name wins over the globs.
        "compute.tasks.libvirt.vm_provision_dispatch": {"queue": "default"},
        "compute.tasks.libvirt.*": {"queue": "libvirt"},
        "compute.tasks.kubernetes.*": {"queue": "kubernetes"},
        "monitoring.tasks.*": {"queue": "monitoring"},
        "usage.tasks.*": {"queue": "monitoring"},
        "compute.tasks.images.*": {"queue": "storage"},
    },
)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_BEAT_SCHEDULE: dict = {
    "reconcile-vms": {
        "task": "compute.tasks.libvirt.reconcile_all",
        "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")),
    },
    "migrations-sweep": {
        "task": "compute.tasks.libvirt.migrations_sweep",
        "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")),
    },
    "vm-ready-sweep": {
        "task": "compute.tasks.libvirt.vm_ready_sweep",
        "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")),
    },
    "volumes-sweep": {
        "task": "compute.tasks.libvirt.volumes_sweep",
        "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")),
    },
    "pools-sweep": {
        "task": "compute.tasks.pools.pools_sweep",
        "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")),
    },
    "idempotency-keys-prune": {
        "task": "compute.tasks.housekeeping.idempotency_keys_prune",
        "schedule": 3600.0,
    },
    "hosts-recount": {"task": "compute.tasks.housekeeping.hosts_recount", "schedule": 3600.0},
}

# --- Monitoring: events and webhooks (monitoring/services.py) -------------------------
# /ws/?batch=1: live messages arriving faster than one per tick share one frame per tick.
ISOTOPE_WS_BATCH_MS = float(os.environ.get("ISOTOPE_WS_BATCH_MS", "50"))
# Each ASGI process compares its live streams' seqs with Redis this often: messages lost
# on their way (a pub/sub reconnect) are made good by resending the stream's state.
ISOTOPE_LIVE_CHECK_SECONDS = float(os.environ.get("ISOTOPE_LIVE_CHECK_SECONDS", "5"))
ISOTOPE_EVENT_FOLD_SECONDS = int(os.environ.get("ISOTOPE_EVENT_FOLD_SECONDS", "600"))
ISOTOPE_EVENT_RETENTION_DAYS = int(os.environ.get("ISOTOPE_EVENT_RETENTION_DAYS", "30"))
ISOTOPE_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("ISOTOPE_WEBHOOK_MAX_ATTEMPTS", "6"))
ISOTOPE_WEBHOOK_RETRY_BASE = float(os.environ.get("ISOTOPE_WEBHOOK_RETRY_BASE", "10"))
ISOTOPE_WEBHOOK_TIMEOUT = float(os.environ.get("ISOTOPE_WEBHOOK_TIMEOUT", "5"))
# Webhooks to loopback/private addresses: allowed in development only, unless set.
ISOTOPE_WEBHOOK_ALLOW_PRIVATE = env_bool("ISOTOPE_WEBHOOK_ALLOW_PRIVATE", DEBUG)
CELERY_BEAT_SCHEDULE.update(
    {
        "monitoring-webhook-requeue": {
            "task": "monitoring.tasks.webhook_deliveries_requeue",
            "schedule": 60.0,
        },
        "monitoring-events-prune": {"task": "monitoring.tasks.events_prune", "schedule": 3600.0},
    }
)

# --- Monitoring: VM metrics (monitoring/collector.py, monitoring/prometheus.py) -------
ISOTOPE_METRICS_SECONDS = float(os.environ.get("ISOTOPE_METRICS_SECONDS", "10"))
ISOTOPE_METRICS_RAW_HOURS = int(os.environ.get("ISOTOPE_METRICS_RAW_HOURS", "24"))
ISOTOPE_METRICS_ROLLUP_DAYS = int(os.environ.get("ISOTOPE_METRICS_ROLLUP_DAYS", "30"))
# /metrics: a bearer token, or a client address in the allow-list (CIDRs, comma separated).
ISOTOPE_METRICS_TOKEN = os.environ.get("ISOTOPE_METRICS_TOKEN", "")
ISOTOPE_METRICS_ALLOW = [
    net.strip()
    for net in os.environ.get("ISOTOPE_METRICS_ALLOW", "127.0.0.1/32,::1/128").split(",")
    if net.strip()
]
# --- VM pool autoscalers (compute/services/autoscalers.py) ---------------------------
# How often every autoscaler runs (HPA's sync period), and how far back the members'
# samples are averaged (three collections by default).
ISOTOPE_AUTOSCALER_SECONDS = float(os.environ.get("ISOTOPE_AUTOSCALER_SECONDS", "15"))
ISOTOPE_AUTOSCALER_METRIC_SECONDS = float(
    os.environ.get("ISOTOPE_AUTOSCALER_METRIC_SECONDS", str(3 * ISOTOPE_METRICS_SECONDS))
)
# A Deployment's autoscaler chart gets a point at least this often (from beat, the HPA's
# last status seen) besides one per status change; every chart keeps the last hour.
ISOTOPE_AUTOSCALER_CHART_SECONDS = float(os.environ.get("ISOTOPE_AUTOSCALER_CHART_SECONDS", "30"))
CELERY_BEAT_SCHEDULE["autoscalers-sweep"] = {
    "task": "compute.tasks.pools.autoscalers_sweep",
    "schedule": ISOTOPE_AUTOSCALER_SECONDS,
}
CELERY_BEAT_SCHEDULE.update(
    {
        "monitoring-metrics-collect": {
            "task": "monitoring.tasks.metrics_collect_all",
            "schedule": ISOTOPE_METRICS_SECONDS,
        },
        "monitoring-metrics-rollup": {"task": "monitoring.tasks.metrics_rollup", "schedule": 300.0},
    }
)

# --- Usage accounting and notifications (usage/, monitoring/notifications.py) ---------
# An hour is rolled up this long after it ends (ledger transactions begun in it are done);
# each run also recomputes the last few hours (idempotent).
ISOTOPE_USAGE_ROLLUP_LAG_SECONDS = float(os.environ.get("ISOTOPE_USAGE_ROLLUP_LAG_SECONDS", "120"))
ISOTOPE_USAGE_RECOMPUTE_HOURS = int(os.environ.get("ISOTOPE_USAGE_RECOMPUTE_HOURS", "3"))
# Retention: hourly rows (detail of the last weeks) and daily rows (a year and more).
ISOTOPE_USAGE_HOURLY_DAYS = int(os.environ.get("ISOTOPE_USAGE_HOURLY_DAYS", "35"))
ISOTOPE_USAGE_DAILY_DAYS = int(os.environ.get("ISOTOPE_USAGE_DAILY_DAYS", "400"))
# Quota use (percent of a limit) announced to the tenant's admins, once per crossing.
ISOTOPE_QUOTA_ALERT_LEVELS = [
    int(p) for p in env_list("ISOTOPE_QUOTA_ALERT_LEVELS", "80,95") if p.strip().isdigit()
]
CELERY_BEAT_SCHEDULE.update(
    {
        "usage-rollup": {
            "task": "usage.tasks.usage_rollup",
            "schedule": float(os.environ.get("ISOTOPE_USAGE_ROLLUP_SECONDS", "300")),
        },
        "notification-emails-requeue": {
            "task": "monitoring.tasks.notification_emails_requeue",
            "schedule": 300.0,
        },
        "quota-alerts-sweep": {"task": "usage.tasks.quota_alerts_sweep", "schedule": 3600.0},
    }
)
# Email (notifications): Django's backends. Development prints mails on the console.
EMAIL_BACKEND = os.environ.get(
    "ISOTOPE_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("ISOTOPE_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("ISOTOPE_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("ISOTOPE_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("ISOTOPE_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("ISOTOPE_EMAIL_TLS")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("ISOTOPE_EMAIL_FROM", "Isotope <isotope@localhost>")
# The portal's address as users reach it, for links in emails (e.g. https://portal.example.com).
ISOTOPE_PUBLIC_URL = os.environ.get("ISOTOPE_PUBLIC_URL", "")

# --- Isotope --------------------------------------------------------------------------
# Limits a new tenant's quota starts with; platform admins change them per tenant.
ISOTOPE_DEFAULT_QUOTA = {
    "cpu": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_CPU", "16")),
    "memory": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_MEMORY", str(32 * 1024))),
    "storage": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_STORAGE", "200")),
    "vms": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_VMS", "20")),
    "pods": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_PODS", "50")),
    "networks": int(os.environ.get("ISOTOPE_DEFAULT_QUOTA_NETWORKS", "10")),
}

# Seconds a guest gets to honour an ACPI shutdown before it is forced off.
ISOTOPE_VM_STOP_TIMEOUT = int(os.environ.get("ISOTOPE_VM_STOP_TIMEOUT", "20"))
# How long a started guest is watched for its Ready signal before the sweep takes over.
ISOTOPE_VM_READY_TIMEOUT = int(os.environ.get("ISOTOPE_VM_READY_TIMEOUT", "300"))
# A VM in a transitional phase for longer than this is re-driven by the reconciler
# (its task was lost, e.g. the worker was killed).
ISOTOPE_STUCK_SECONDS = int(os.environ.get("ISOTOPE_STUCK_SECONDS", "60"))
# Members per EndpointSlice of an Isotope Service (compute.services.load_balancers): more
# members are spread over more slices, as Kubernetes' --max-endpoints-per-slice (1-1000).
ISOTOPE_ENDPOINTS_PER_SLICE = min(
    1000, max(1, int(os.environ.get("ISOTOPE_ENDPOINTS_PER_SLICE", "100")))
)
# How long one task may hold a VM's lock (a killed worker's lock expires after this).
ISOTOPE_VM_LOCK_SECONDS = int(os.environ.get("ISOTOPE_VM_LOCK_SECONDS", "120"))

# --- Volumes (compute/services/volumes.py) ----------------------------------------------
# A host's volume pool: a libvirt dir pool named ISOTOPE_VOLUME_POOL in the host's
# storage path (Host.storage_path, else ISOTOPE_STORAGE_ROOT/<host name>).
ISOTOPE_STORAGE_ROOT = os.environ.get("ISOTOPE_STORAGE_ROOT", "/var/lib/isotope/volumes")
ISOTOPE_VOLUME_POOL = os.environ.get("ISOTOPE_VOLUME_POOL", "isotope-volumes")
ISOTOPE_MAX_VOLUME_GIB = int(os.environ.get("ISOTOPE_MAX_VOLUME_GIB", "4096"))
# Kubernetes volume claims: their StorageClass; when it has no provisioner
# (kubernetes.io/no-provisioner) the portal creates one hostPath PV per claim under
# ISOTOPE_K8S_VOLUME_ROOT, pre-bound to it.
ISOTOPE_K8S_STORAGE_CLASS = os.environ.get("ISOTOPE_K8S_STORAGE_CLASS", "isotope-local")
ISOTOPE_K8S_VOLUME_ROOT = os.environ.get("ISOTOPE_K8S_VOLUME_ROOT", "/var/lib/isotope/k8s-volumes")

# --- Kubernetes workloads (compute/services/workloads.py, clusters.py) ----------------
# A tenant's namespace is this prefix + its slug (tenants.models.Tenant.namespace); the
# portal takes a namespace without it for no tenant's. Two installations sharing one
# cluster (staging and production, say) each set their own.
ISOTOPE_K8S_NAMESPACE_PREFIX = os.environ.get("ISOTOPE_K8S_NAMESPACE_PREFIX", "isotope-")
if not re.fullmatch(r"[a-z][-a-z0-9]{0,22}", ISOTOPE_K8S_NAMESPACE_PREFIX):
    raise ImproperlyConfigured(
        f"ISOTOPE_K8S_NAMESPACE_PREFIX={ISOTOPE_K8S_NAMESPACE_PREFIX!r}: use 1-23 lowercase "
        "letters, digits and hyphens, starting with a letter (with a 40-character tenant "
        "slug it makes a namespace name of at most 63), e.g. isotope-staging-"
    )
# Namespace ResourceQuota: limits.cpu/limits.memory = the tenant's cpu/memory × this.
ISOTOPE_K8S_LIMIT_RATIO = float(os.environ.get("ISOTOPE_K8S_LIMIT_RATIO", "2"))
# The watch marks a cluster's workloads Unknown after this long without the API server.
ISOTOPE_K8S_UNKNOWN_AFTER = float(os.environ.get("ISOTOPE_K8S_UNKNOWN_AFTER", "5"))
# manage.py watch_kubernetes: only the holder of this Redis lease watches (any number
# may run; a standby takes over within one lease when the leader stops or dies).
ISOTOPE_WATCHER_LEASE_SECONDS = float(os.environ.get("ISOTOPE_WATCHER_LEASE_SECONDS", "15"))
# A workload Pending for longer than this is applied again by the reconciler.
ISOTOPE_K8S_STUCK_SECONDS = int(os.environ.get("ISOTOPE_K8S_STUCK_SECONDS", "120"))
CELERY_BEAT_SCHEDULE["reconcile-clusters"] = {
    "task": "compute.tasks.kubernetes.reconcile_clusters",
    "schedule": float(os.environ.get("ISOTOPE_K8S_RECONCILE_SECONDS", "30")),
}
# Libvirt sockets a host URI may name with ?socket= (compute.services.hosts).
ISOTOPE_LIBVIRT_SOCKETS = env_list(
    "ISOTOPE_LIBVIRT_SOCKETS",
    ",".join(
        f"{run}/libvirt/{name}{ro}"
        for run in ("/run", "/var/run")
        for name in ("libvirt-sock", "virtqemud-sock")
        for ro in ("", "-ro")
    ),
)

# --- Backups (compute/services/backups.py) ----------------------------------------------
# Where exported VM snapshots are written (<dir>/<tenant>/<backup uid>/<device>.qcow2) by
# the workers, streamed from the hosts through libvirt; shared by every worker (a network
# file system in production).
ISOTOPE_BACKUP_DIR = os.environ.get("ISOTOPE_BACKUP_DIR", str(BASE_DIR / "var" / "backups"))

# --- Image import (compute/services/images.py, compute/imagefiles.py) -----------------
# Where imported images live (<dir>/tenants/<tenant>/<uid>.qcow2, staging in <dir>/.staging):
# a path every libvirt host reads (the tiny guest from tools.infra lives here too).
ISOTOPE_IMAGE_DIR = os.environ.get("ISOTOPE_IMAGE_DIR", "/var/lib/isotope/images")
# The largest file a tenant may upload or download (bytes; 20 GiB).
ISOTOPE_IMAGE_MAX_BYTES = int(os.environ.get("ISOTOPE_IMAGE_MAX_BYTES", str(20 * 1024**3)))
# A raw file smaller than this is not taken for a disk image (bytes; 1 MiB).
ISOTOPE_IMAGE_MIN_RAW_BYTES = int(os.environ.get("ISOTOPE_IMAGE_MIN_RAW_BYTES", str(1024**2)))
# Non-public networks an import URL may point at anyway (CIDRs, comma separated): none.
ISOTOPE_IMAGE_URL_ALLOW = env_list("ISOTOPE_IMAGE_URL_ALLOW")
# Chunk size of browser uploads (each PATCH), and how long an idle upload is kept.
ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES = int(
    os.environ.get("ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES", str(8 * 1024**2))
)
ISOTOPE_IMAGE_UPLOAD_EXPIRE_HOURS = float(os.environ.get("ISOTOPE_IMAGE_UPLOAD_EXPIRE_HOURS", "24"))
# Seconds without network progress before a download is given up.
ISOTOPE_IMAGE_DOWNLOAD_TIMEOUT = float(os.environ.get("ISOTOPE_IMAGE_DOWNLOAD_TIMEOUT", "30"))
# An import task renews its lock while it works; a lock not renewed for this long means
# its worker died and the sweep starts the import again (at most MAX_ATTEMPTS times).
ISOTOPE_IMAGE_LOCK_SECONDS = int(os.environ.get("ISOTOPE_IMAGE_LOCK_SECONDS", "60"))
ISOTOPE_IMAGE_MAX_ATTEMPTS = int(os.environ.get("ISOTOPE_IMAGE_MAX_ATTEMPTS", "3"))
# Scheduled snapshots (compute.services.snapshot_schedules): due ones are taken within
# this many seconds of their time.
CELERY_BEAT_SCHEDULE["snapshot-schedules"] = {
    "task": "compute.tasks.libvirt.snapshot_schedules_run",
    "schedule": float(os.environ.get("ISOTOPE_SNAPSHOT_SCHEDULE_SECONDS", "60")),
}
CELERY_BEAT_SCHEDULE["images-sweep"] = {
    "task": "compute.tasks.images.images_sweep",
    "schedule": float(os.environ.get("ISOTOPE_RECONCILE_SECONDS", "10")) * 3,
}

# In-page VM console (compute.services.console): ticket lifetime (capped at 30 s),
# concurrent sessions per user per VM and per VM, idle timeout without user input.
ISOTOPE_CONSOLE_TICKET_SECONDS = int(os.environ.get("ISOTOPE_CONSOLE_TICKET_SECONDS", "30"))
ISOTOPE_CONSOLE_SESSIONS_PER_USER = int(os.environ.get("ISOTOPE_CONSOLE_SESSIONS_PER_USER", "2"))
ISOTOPE_CONSOLE_SESSIONS_PER_VM = int(os.environ.get("ISOTOPE_CONSOLE_SESSIONS_PER_VM", "8"))
ISOTOPE_CONSOLE_IDLE_SECONDS = int(os.environ.get("ISOTOPE_CONSOLE_IDLE_SECONDS", "900"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ISOTOPE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

SPECTACULAR_SETTINGS.update(
    {
        # A Service's type (ClusterIP, NodePort) and an event's type (Normal, Warning)
        # are both fields named "type": each choice set gets a name of its own.
        "ENUM_NAME_OVERRIDES": {"ServiceTypeEnum": "compute.choices.SERVICE_TYPES"},
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        # No badge from validator.swagger.io: the page loads nothing from elsewhere (CSP).
        "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    }
)
INSTALLED_APPS.append("drf_spectacular_sidecar")

# --- Identity: sign-in, single sign-on (OIDC), two-factor (portal/identity/) ----------
# django-allauth runs /login/ (the password form, then the second factor) and the OIDC
# flow; django-axes keeps counting failed passwords (above). See README "Single sign-on".
ACCOUNT_ADAPTER = "portal.identity.accounts.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "portal.identity.sso.SocialAccountAdapter"
ACCOUNT_FORMS = {"login": "portal.identity.accounts.LoginForm"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = False
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGOUT_REDIRECT_URL = "login"
# Wrong second-factor codes: per user (and per address), ISOTOPE_MFA_FAILURE_LIMIT in
# ISOTOPE_LOGIN_COOLOFF_MINUTES, then refused until the window passes. Wrong passwords
# are django-axes' (the account adapter skips allauth's own count), so "login_failed"
# only counts codes; allauth's limit on successful sign-ins per address is off.
ISOTOPE_MFA_FAILURE_LIMIT = int(os.environ.get("ISOTOPE_MFA_FAILURE_LIMIT", "5"))
ACCOUNT_RATE_LIMITS = {
    "login": None,
    "login_failed": f"{ISOTOPE_MFA_FAILURE_LIMIT * 4}/m/ip,"
    f"{ISOTOPE_MFA_FAILURE_LIMIT}/{int(AXES_COOLOFF_TIME.total_seconds())}s/key",
}
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # an SSO email never takes over a local account
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_LOGIN_ON_GET = False  # the SSO button POSTs (no sign-in by a crafted link)
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_ONLY = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_TOTP_ISSUER = os.environ.get("ISOTOPE_MFA_ISSUER", "Isotope")
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG  # http://127.0.0.1 in development and tests
# Platform admins require a second factor from staff (every page) with this setting, and
# per tenant in Django admin (Tenant "require 2FA"). API tokens are never asked for one.
ISOTOPE_REQUIRE_2FA_STAFF = env_bool("ISOTOPE_REQUIRE_2FA_STAFF")

# An OpenID Connect provider from the environment (another can be added in Django admin,
# "Social applications", provider "OpenID Connect"). Its "settings" JSON takes the same
# keys: server_url, scope, groups_claim, username_claim, ca_file.
ISOTOPE_OIDC = {
    "provider_id": os.environ.get("ISOTOPE_OIDC_ID", "sso"),
    "name": os.environ.get("ISOTOPE_OIDC_NAME", "Single sign-on"),
    "issuer": os.environ.get("ISOTOPE_OIDC_ISSUER", ""),
    "client_id": os.environ.get("ISOTOPE_OIDC_CLIENT_ID", ""),
    "secret": os.environ.get("ISOTOPE_OIDC_CLIENT_SECRET", ""),
    "scope": env_list("ISOTOPE_OIDC_SCOPES", "openid,profile,email,groups"),
    "groups_claim": os.environ.get("ISOTOPE_OIDC_GROUPS_CLAIM", "groups"),
    "username_claim": os.environ.get("ISOTOPE_OIDC_USERNAME_CLAIM", "preferred_username"),
    "ca_file": os.environ.get("ISOTOPE_OIDC_CA_FILE", ""),
}
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        # allauth's provider with the checks we add (ID token signature always, nonce,
        # PKCE, a provider that is down): portal/identity/oidc/.
        "provider_class": "portal.identity.oidc.provider.IsotopeOIDCProvider",
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": ISOTOPE_OIDC["provider_id"],
                "name": ISOTOPE_OIDC["name"],
                "client_id": ISOTOPE_OIDC["client_id"],
                "secret": ISOTOPE_OIDC["secret"],
                "settings": {
                    "server_url": ISOTOPE_OIDC["issuer"],
                    "scope": ISOTOPE_OIDC["scope"],
                    "groups_claim": ISOTOPE_OIDC["groups_claim"],
                    "username_claim": ISOTOPE_OIDC["username_claim"],
                    "ca_file": ISOTOPE_OIDC["ca_file"],
                    "oauth_pkce_enabled": True,
                },
            }
        ]
        if ISOTOPE_OIDC["issuer"] and ISOTOPE_OIDC["client_id"]
        else [],
    }
}
