"""Formats of what a host says in stored messages: a host's own message and the plain
reasons its backend gives for a failed call, which become a VM's status message or a
migration's reason (``portal.texts``). The action inside ("start the VM") stays as the
backend wrote it."""

from django.utils.translation import gettext_noop

NO_VOLUME_STORAGE = gettext_noop("No volume storage: %(error)s")

# compute.backends.libvirt: QEMU found no free VNC port for the VM.
CONSOLE_PORT = gettext_noop("The host could not allocate a console port for this VM")
CONSOLE_PORT_FAILED = gettext_noop("The host could not allocate a console port for this VM.")
CONSOLE_PORT_RETRYING = gettext_noop(
    "The host could not allocate a console port for this VM; retrying."
)
# compute.backends.libvirt: a failed call, in plain words for tenants.
NO_SUCH_VOLUME = gettext_noop("The host has no such volume (%(action)s).")
NO_SUCH_DOMAIN = gettext_noop("The host has no such domain (%(action)s).")
COULD_NOT = gettext_noop("The host could not %(action)s.")
COULD_NOT_RETRYING = gettext_noop("The host could not %(action)s; retrying.")
HOST_NOT_ANSWERING = gettext_noop("The host did not answer; retrying.")
SOURCE_NOT_ANSWERING = gettext_noop("The source host did not answer; retrying.")
TARGET_NOT_ANSWERING = gettext_noop("The target host did not answer; retrying.")
VM_NOT_RUNNING = gettext_noop("The VM is not running.")
VM_RUNNING = gettext_noop("The VM is running.")
DOMAIN_OF_ANOTHER_VM = gettext_noop(
    "A domain named %(domain)s exists on this host and belongs to another VM; it was left alone."
)
DOMAIN_OF_NOBODY = gettext_noop(
    "A domain named %(domain)s exists on this host and belongs to nobody in Isotope; it was "
    "left alone."
)
POOL_ELSEWHERE = gettext_noop(
    "Pool %(pool)s on this host is at %(defined)s, not at the host's storage path "
    "%(path)s; fix the host's storage path or the pool."
)
DEVICE_NOT_RELEASED = gettext_noop("The guest has not released %(device)s yet; trying again.")
INTERFACE_NOT_RELEASED = gettext_noop(
    "The guest has not released the interface %(mac)s yet; trying again."
)
NO_LIVE_MIGRATION_TEST_DRIVER = gettext_noop(
    "libvirt's test driver does not support live migration."
)
DOMAIN_NOT_ON_SOURCE = gettext_noop("The VM's domain is not on the source host.")
MIGRATION_NOT_COMPLETED = gettext_noop("The hosts could not complete the migration.")
NETWORK_OVERLAP = gettext_noop(
    "Another network with an overlapping address range is active on this host."
)

# compute.services.hosts.host_uri_check: why a libvirt URI is refused (a host's message).
URI_REFUSED = gettext_noop("Refused libvirt URI: %(problem)s")
URI_TOO_LONG = gettext_noop("enter a libvirt URI of at most 255 characters.")
URI_INVALID = gettext_noop("it is not a valid URI.")
URI_DRIVER = gettext_noop("driver %(driver)s is not supported (use qemu or test).")
URI_EXT = gettext_noop("the ext transport runs an arbitrary command on the portal host.")
URI_TRANSPORT = gettext_noop("transport %(transport)s is not allowed.")
URI_FRAGMENT = gettext_noop("a fragment (#...) has no meaning here.")
URI_REMOTE_HOST = gettext_noop(
    "a remote transport needs a host name or address (not starting '-')."
)
URI_USER = gettext_noop("the user name may only hold letters, digits, '.', '_' and '-'.")
URI_PASSWORD = gettext_noop("passwords do not belong in the URI.")
URI_NAME_TRANSPORT = gettext_noop(
    "name the transport for a remote host (qemu+tls://, qemu+tcp://, qemu+ssh://)."
)
URI_TEST_LOCAL = gettext_noop("the test driver is local only (test:///default).")
URI_PORT = gettext_noop("the port is out of range.")
URI_PARAMETERS = gettext_noop("the parameters cannot be read.")
URI_COMMAND = gettext_noop("?command= names a program for the portal host to run.")
URI_NETCAT = gettext_noop("?netcat= names a program to run.")
URI_FILE = gettext_noop("?%(parameter)s= names a file on the portal host; configure it there.")
URI_SOCKET = gettext_noop("?socket= must be one of %(sockets)s.")
URI_UNKNOWN = gettext_noop("unknown parameter ?%(parameter)s=.")
URI_VALUE = gettext_noop("?%(parameter)s=%(value)s is not allowed.")

# compute.backends: what a host's or cluster's backend cannot do (its default answer).
BACKEND_NO_VOLUME_STORAGE = gettext_noop("This host's backend has no volume storage.")
BACKEND_NO_MEMORY_STATE = gettext_noop("This host's backend cannot save a running VM's memory.")
BACKEND_NO_VOLUME_CLONE = gettext_noop("This host's backend cannot clone volumes.")
BACKEND_NO_VOLUME_RESIZE = gettext_noop("This host's backend cannot resize volumes.")
BACKEND_NO_VOLUME_EXPORT = gettext_noop("This host's backend cannot export volumes.")
BACKEND_NO_VOLUME_IMPORT = gettext_noop("This host's backend cannot import volumes.")
BACKEND_NO_DISK_ATTACH = gettext_noop("This host's backend cannot attach disks.")
BACKEND_NO_DISK_DETACH = gettext_noop("This host's backend cannot detach disks.")
BACKEND_NO_ONLINE_DISK_RESIZE = gettext_noop("This host's backend cannot resize disks online.")
BACKEND_NO_NETWORKS = gettext_noop("This host's backend has no networks.")
BACKEND_NO_INTERFACE_ATTACH = gettext_noop("This host's backend cannot attach interfaces.")
BACKEND_NO_INTERFACE_DETACH = gettext_noop("This host's backend cannot detach interfaces.")
BACKEND_NO_PACKET_FILTERS = gettext_noop("This host's backend has no packet filters.")
BACKEND_NO_TUNNELS = gettext_noop("This host's backend has no tunnels between hosts.")
# compute.backends.libvirt.tunnels: the host's bridge is not where the worker runs.
TUNNEL_NOT_HERE = gettext_noop(
    "The network's tunnel must be made on the host itself, and this worker does not run "
    "there (run a host worker on it)."
)
BACKEND_NO_LIVE_MIGRATION = gettext_noop("This host's backend does not support live migration.")
BACKEND_NO_POST_COPY = gettext_noop("This host's backend does not support post-copy.")
CLUSTER_NO_AUTOSCALERS = gettext_noop("This cluster's backend has no HorizontalPodAutoscalers.")
CLUSTER_NO_LOAD_BALANCERS = gettext_noop("This cluster's backend has no load-balanced services.")
CLUSTER_NO_SECURITY_GROUPS = gettext_noop("This cluster's backend has no security group policies.")
CLUSTER_NO_VOLUME_CLAIMS = gettext_noop("This cluster's backend has no volume claims.")
