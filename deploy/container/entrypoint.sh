#!/bin/sh
# The image's entrypoint: the first argument picks the role, the same commands as the
# Procfile and deploy/systemd. Settings come from the environment (README, settings).
#   web                  gunicorn + uvicorn processes (deploy/gunicorn.conf.py), port $PORT
#   worker [QUEUES]      a Celery worker; QUEUES comma separated (default: every queue),
#                        e.g. "libvirt.node1" for one host's worker (ISOTOPE_HOST_QUEUES)
#   beat                 the periodic scheduler: exactly one in the deployment
#   watcher              the Kubernetes watch (leader-elected: any number may run)
#   migrate              apply database migrations, then exit (run before the others)
#   anything else        run as a command, e.g. "python manage.py createsuperuser"
set -eu
role=${1:-web}
[ $# -gt 0 ] && shift
case "$role" in
  web)
    exec gunicorn -c deploy/gunicorn.conf.py portal.asgi:application
    ;;
  worker)
    queues=${1:-default,libvirt,kubernetes,monitoring,storage}
    exec celery -A portal worker -Q "$queues" -n "${queues%%,*}@%h" \
      --concurrency "${ISOTOPE_WORKER_CONCURRENCY:-4}" -l info
    ;;
  beat)
    exec celery -A portal beat -l info -s "${ISOTOPE_VAR:-/var/lib/isotope}/celerybeat-schedule"
    ;;
  watcher)
    exec python manage.py watch_kubernetes
    ;;
  migrate)
    exec python manage.py migrate --noinput
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
