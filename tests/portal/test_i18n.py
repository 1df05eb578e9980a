"""Chinese (zh-hans) and English: the catalogues are complete and compiled, the language
comes from the browser or the user's stored choice, and pages, API errors, messages and
the JavaScript catalogue speak it."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

from compute.models import Image
from compute.services import vms as vm_services
from tenants import services
from tenants.models import AuditLog, UserPreference

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "locale"
CATALOGUES = [
    LOCALE / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po" for domain in ("django", "djangojs")
]
# What makemessages must not walk into: dependencies, build output, tests and tools.
NOT_OURS = [
    ".venv",
    "node_modules",
    "static/vendor",
    "var",
    "staticfiles",
    "tests",
    "tools",
    "bench",
]
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-Hans,zh;q=0.9,en;q=0.5"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}


def untranslated(po: Path) -> str:
    """The entries of ``po`` without a translation, or fuzzy ones ("" when none)."""
    return "".join(
        subprocess.run(
            ["msgattrib", which, "--no-wrap", str(po)], capture_output=True, text=True, check=True
        ).stdout
        for which in ("--untranslated", "--only-fuzzy")
    )


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: p.name)
def test_every_msgid_of_the_zh_hans_catalogue_has_a_translation(po):
    assert po.exists()
    assert untranslated(po) == ""
    # And every translation keeps the placeholders of its msgid (msgfmt's format check).
    subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(po)], check=True)


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: p.name)
def test_the_committed_mo_files_are_compiled_from_the_po_files(po, tmp_path):
    compiled = tmp_path / "fresh.mo"
    subprocess.run(["msgfmt", "-o", str(compiled), str(po)], check=True)
    with compiled.open("rb") as fresh, po.with_suffix(".mo").open("rb") as committed:
        expected = gettext.GNUTranslations(fresh)._catalog
        assert gettext.GNUTranslations(committed)._catalog == expected, (
            "run: python manage.py compilemessages -l zh_Hans --ignore .venv"
        )


def test_makemessages_finds_no_string_that_the_catalogue_does_not_translate(tmp_path, monkeypatch):
    """A string marked for translation anywhere (templates, Python, static/js) without a
    zh_Hans translation fails here: run makemessages (README) and translate it.

    makemessages writes into the catalogue of the project directory it runs in (whatever
    LOCALE_PATHS says), so it runs in a copy of our sources: the real catalogue is left
    as it is."""
    tree = tmp_path / "tree"

    def not_ours(directory: str, names: list[str]) -> set[str]:
        here = Path(directory).relative_to(ROOT)
        return {n for n in names if (here / n).as_posix() in NOT_OURS or n == ".git"}

    shutil.copytree(ROOT, tree, ignore=not_ours, symlinks=True)
    before = {po: po.read_bytes() for po in CATALOGUES}
    monkeypatch.chdir(tree)
    with override_settings(LOCALE_PATHS=[tree / "locale"]):
        for domain in ("django", "djangojs"):
            call_command(
                "makemessages",
                locale=["zh_Hans"],
                domain=domain,
                ignore_patterns=NOT_OURS,
                no_obsolete=True,
                verbosity=0,
            )
    for domain in ("django", "djangojs"):
        assert untranslated(tree / "locale" / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po") == ""
    assert {po: po.read_bytes() for po in CATALOGUES} == before, "the real catalogue changed"


# --- Templates: no literal left outside {% translate %} ---------------------------------
# Words that read the same in every language: the product's name, units, formats.
SAME_EVERYWHERE = {"Isotope", "GiB", "MiB", "KiB", "UTC", "qcow2", "raw", "JSON", "YAML", "CSV"}
SAME_EVERYWHERE |= {"API", "vCPU", "CPU", "TCP", "HTTP", "GET"}
CODE_LIKE = re.compile(r"^[\w\-.]*[=/_:<>@][\w\-.=/:<>@]*$")


def untranslated_literals(source: str) -> list[str]:
    """Visible English in a template outside the translation tags: text between tags and
    aria-label, title and alt values. Code (<code>, <pre>, <kbd>, <script>), template
    comments and variables are not words to translate."""
    text = re.sub(r"{#.*?#}", " ", source, flags=re.S)
    text = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", " ", text, flags=re.S)
    text = re.sub(r"{%\s*block body_class\s*%}.*?{%\s*endblock\s*%}", " ", text, flags=re.S)
    text = re.sub(r"{%\s*blocktranslate\b.*?{%\s*endblocktranslate\s*%}", " ", text, flags=re.S)
    text = re.sub(r"{%.*?%}|{{.*?}}", " ", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(
        r"<(script|style|code|pre|kbd|samp)\b[^>]*>.*?</\1>", " ", text, flags=re.S | re.I
    )
    chunks = re.findall(r'\b(?:aria-label|title|alt)="([^"]*)"', text)
    chunks += re.split(r"<[^>]*>", text)
    left = []
    for chunk in chunks:
        chunk = re.sub(r"&[a-z]+;|&#\d+;", " ", chunk).strip()
        if not re.search(r"[A-Za-z]{2,}", chunk) or CODE_LIKE.match(chunk):
            continue
        words = [w for w in re.split(r"[\s·—,()]+", chunk) if re.search(r"[A-Za-z]{2,}", w)]
        if all(w in SAME_EVERYWHERE for w in words):
            continue
        left.append(re.sub(r"\s+", " ", chunk))
    return left


def test_the_literal_check_finds_text_and_labels_left_in_english():
    page = '<p title="Remove it">{% translate "Delete" %} it <code>rm -rf</code></p>'
    assert untranslated_literals(page) == ["Remove it", "it"]
    assert (
        untranslated_literals(
            "<b>{% blocktranslate with n=x %}{{ n }} VMs{% endblocktranslate %}</b>"
        )
        == []
    )


@pytest.mark.parametrize(
    "template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_template_has_an_untranslated_literal(template):
    assert untranslated_literals(template.read_text()) == []


# --- Which language -------------------------------------------------------------------
@pytest.mark.django_db
def test_a_signed_out_visitor_gets_the_language_of_accept_language():
    chinese = Client().get("/login/", **ZH)
    assert chinese["Content-Language"] == "zh-hans"
    assert '<html lang="zh-hans"' in chinese.content.decode()
    assert "登录" in chinese.content.decode()
    english = Client().get("/login/", **EN)
    assert english["Content-Language"] == "en"
    assert "Sign in" in english.content.decode() and "登录" not in english.content.decode()


@pytest.mark.django_db
def test_a_users_stored_language_wins_over_the_browser_and_empty_follows_it(demo):
    client = Client()
    client.force_login(demo.carol)
    assert "Virtual machines" in client.get("/t/acme/vms/", **EN).content.decode()
    services.preference_set_language(user=demo.carol, language="zh-hans")
    page = client.get("/t/acme/vms/", **EN).content.decode()
    assert '<html lang="zh-hans"' in page
    assert "还没有虚拟机" in page and "No virtual machines yet" not in page
    services.preference_set_language(user=demo.carol, language="")
    assert "还没有虚拟机" in client.get("/t/acme/vms/", **ZH).content.decode()
    assert "No virtual machines yet" in client.get("/t/acme/vms/", **EN).content.decode()


@pytest.mark.django_db
def test_setting_a_language_stores_it_and_audits_the_change(demo):
    services.preference_set_language(user=demo.carol, language="zh-hans")
    assert UserPreference.objects.get(user=demo.carol).language == "zh-hans"
    entry = AuditLog.objects.filter(action="preference.set").latest("pk")
    assert entry.detail == {"language": "zh-hans", "was": ""}


@pytest.mark.django_db
def test_an_unknown_language_is_refused_and_changes_nothing(demo):
    from portal.exceptions import ValidationError

    services.preference_set_language(user=demo.carol, language="en")
    with pytest.raises(ValidationError) as error:
        services.preference_set_language(user=demo.carol, language="klingon")
    assert "en, zh-hans" in str(error.value.errors)
    assert UserPreference.objects.get(user=demo.carol).language == "en"


@pytest.mark.django_db
def test_the_switch_stores_the_choice_sets_the_cookie_and_goes_back(demo):
    client = Client()
    client.force_login(demo.carol)
    response = client.post("/profile/language/", {"language": "zh-hans", "next": "/t/acme/vms/"})
    assert response.status_code == 302 and response["Location"] == "/t/acme/vms/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert UserPreference.objects.get(user=demo.carol).language == "zh-hans"
    page = client.get("/t/acme/vms/", **EN).content.decode()
    assert 'data-testid="language-switch"' in page and 'value="zh-hans" lang="zh-hans"' in page
    # The choice follows the user to another browser (no cookie there).
    elsewhere = Client()
    elsewhere.force_login(demo.carol)
    assert "还没有虚拟机" in elsewhere.get("/t/acme/vms/", **EN).content.decode()


@pytest.mark.django_db
def test_a_bad_language_or_a_foreign_next_is_a_message_not_a_500(demo):
    client = Client()
    client.force_login(demo.carol)
    response = client.post(
        "/profile/language/",
        {"language": "<script>", "next": "https://evil.example/"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/profile/"
    assert "Unknown language" in response.content.decode()
    assert not UserPreference.objects.filter(user=demo.carol).exclude(language="").exists()
    assert client.get("/profile/language/").status_code == 405


@pytest.mark.django_db
def test_a_signed_out_visitor_switches_with_the_cookie_only():
    client = Client()
    response = client.post("/profile/language/", {"language": "zh-hans", "next": "/login/"})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "登录" in client.get("/login/", **EN).content.decode()
    assert not UserPreference.objects.exists()
    refused = client.post("/profile/language/", {"language": "xx"})
    assert refused.status_code == 302 and refused["Location"] == "/login/"


# --- What is translated ---------------------------------------------------------------
@pytest.mark.django_db
def test_the_create_form_messages_and_phases_speak_chinese(demo, make_host, tiny_image):
    make_host("node-a")
    client = Client()
    client.force_login(demo.bob)
    services.preference_set_language(user=demo.bob, language="zh-hans")
    form = client.get("/t/acme/vms/new/").content.decode()
    for words in ("创建虚拟机", "名称", "规格", "自定义", "小写字母、数字和连字符"):
        assert words in form
    fields = {
        "image": str(Image.objects.get(name="tiny").pk),
        "size": "custom",
        "vcpus": "1",
        "memory_mib": "256",
        "disk_gib": "0",
        "restart_policy": "OnFailure",
    }
    refused = client.post("/t/acme/vms/new/", {**fields, "name": "Web_1", "memory_mib": "9"})
    assert refused.status_code == 400
    assert "最多 63 个小写字母、数字和连字符" in refused.content.decode()
    assert "必须在 64 到" in refused.content.decode()
    response = client.post(
        "/t/acme/vms/new/",
        {**fields, "name": "web-1"},
        follow=True,
    )
    page = response.content.decode()
    assert "web-1 已受理：正在配置。" in page
    assert 'data-phase="Pending"' in page and ">等待中<" in page


@pytest.mark.django_db
def test_api_problem_titles_and_quota_refusals_follow_accept_language(demo, make_host, tiny_image):
    from rest_framework.test import APIClient

    make_host("node-a")
    api = APIClient()
    api.force_authenticate(demo.bob)
    missing = api.get("/api/v1/tenants/acme/virtualmachines/nope/", **ZH)
    assert missing.status_code == 404 and missing.json()["title"] == "未找到"
    assert (
        api.get("/api/v1/tenants/acme/virtualmachines/nope/", **EN).json()["title"] == "Not found"
    )
    body = {"metadata": {"name": "big"}, "spec": {"image": "tiny", "vcpus": 64, "memoryMiB": 256}}
    refused = api.post("/api/v1/tenants/acme/virtualmachines/", body, format="json", **ZH)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["title"] == "超出配额" and problem["type"].endswith("/quota-exceeded")
    assert "cpu 超出配额：申请 64 核" in problem["errors"]["spec.vcpus"][0]
    assert problem["exceeded"][0]["resource"] == "cpu"  # machine-readable parts stay as they are


@pytest.mark.django_db
def test_times_are_worded_in_the_readers_language(demo, make_host, tiny_image):
    from django.utils import translation

    from monitoring.formats import ago

    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    with translation.override("zh-hans"):
        assert ago(vm.created - timedelta(minutes=3), now=vm.created) == "3 分钟前"
        assert ago(vm.created, now=vm.created) == "刚刚"
    with translation.override("en"):
        assert ago(vm.created - timedelta(minutes=1), now=vm.created) == "1 minute ago"


def test_the_javascript_catalogue_serves_the_chosen_language():
    chinese = Client().get("/jsi18n/", **ZH).content.decode("utf-8")
    assert '"Running": "\\u8fd0\\u884c\\u4e2d"' in chinese or '"Running": "运行中"' in chinese
    assert "Reconnecting" in chinese  # the console's states
    english = Client().get("/jsi18n/", **EN).content.decode("utf-8")
    assert "\\u8fd0\\u884c\\u4e2d" not in english and "运行中" not in english


@pytest.mark.django_db
def test_workload_checks_speak_the_readers_language(demo):
    from django.utils import translation

    from compute.services import workloads as workload_services
    from portal.exceptions import ValidationError

    def refusal(language: str) -> dict:
        with translation.override(language), pytest.raises(ValidationError) as error:
            workload_services.workload_create(
                actor=None, tenant=demo.acme, name="Web", image="nginx:1.27", replicas="x"
            )
        return {"message": error.value.message, **error.value.errors}

    chinese = refusal("zh-hans")
    assert chinese["message"] == "工作负载参数无效。"
    assert chinese["replicas"] == ["请输入整数。"]
    assert "DNS 标签" in chinese["name"][0]
    assert refusal("en")["replicas"] == ["Enter a whole number."]


def test_security_group_network_and_backup_refusals_speak_the_readers_language(demo):
    from django.utils import translation

    from compute.services import backups as backup_services
    from compute.services import networks as network_services
    from compute.services import security_groups as group_services
    from portal.exceptions import ApplicationError

    def refusal(language: str, call) -> dict:
        with translation.override(language), pytest.raises(ApplicationError) as error:
            call()
        return {"message": error.value.message, **error.value.errors}

    def bad_group():
        group_services.group_create(
            actor=None,
            tenant=demo.acme,
            name="web",
            rules=[{"direction": "ingress", "protocol": "icmp", "port_min": "22"}],
        )

    assert refusal("zh-hans", bad_group) == {
        "message": "有规则无效。",
        "rules[0].port_min": ["端口只适用于 TCP 和 UDP，不适用于 icmp。"],
        "rules[0].remote_cidr": ["请填写另一端：一个 CIDR（0.0.0.0/0 表示任意地址）或一个安全组。"],
    }
    assert refusal("en", bad_group)["message"] == "A rule is not valid."

    def bad_network():
        network_services.network_create(
            actor=None, tenant=demo.acme, name="lan", cidr="10.0.0.1/24"
        )

    chinese = refusal("zh-hans", bad_network)
    assert chinese == {
        "message": "网络无效。",
        "cidr": ["10.0.0.1/24 设置了主机位；网络应为 10.0.0.0/24。"],
    }
    assert refusal("en", bad_network)["cidr"] == [
        "10.0.0.1/24 has host bits set; the network is 10.0.0.0/24."
    ]
    with translation.override("zh-hans"):
        assert backup_services._phase_error("restore", "Failed") == {
            "phase": ["在 Failed 阶段无法执行 restore。"]
        }


@pytest.mark.django_db
def test_django_admin_in_chinese_names_the_usage_models_in_chinese(demo):
    staff = Client()
    staff.force_login(demo.admin)
    index = staff.get("/admin/", **ZH).content.decode()
    for plural in ("价目表", "配额申请", "配额自动批准规则"):
        assert f">{plural}</a>" in index, plural
    english = staff.get("/admin/", **EN).content.decode()
    assert ">Price lists</a>" in english and ">Quota requests</a>" in english


@pytest.mark.django_db
def test_django_admin_in_chinese_names_the_models_and_their_fields_in_chinese(
    demo, make_host, tiny_image
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    staff = Client()
    staff.force_login(demo.admin)
    index = staff.get("/admin/", **ZH).content.decode()
    for plural in ("虚拟机", "工作负载", "租户", "主机", "迁移策略", "Kubernetes 集群", "审计日志"):
        assert f">{plural}</a>" in index
    vms = staff.get("/admin/compute/virtualmachine/", **ZH).content.decode()
    for column in ("名称", "租户", "阶段", "期望状态", "内存（MiB）"):
        assert column in vms
    assert "web-1" in vms
    english = staff.get("/admin/", **EN).content.decode()
    assert ">Virtual machines</a>" in english and ">Migration policies</a>" in english
    assert "虚拟机" not in english


@pytest.mark.django_db
def test_service_refusals_reach_the_api_in_the_readers_language(demo, make_host, tiny_image):
    from rest_framework.test import APIClient

    from compute.choices import Phase
    from compute.models import VirtualMachine

    make_host("node-a")
    api = APIClient()
    api.force_authenticate(demo.bob)
    base = "/api/v1/tenants/acme/virtualmachines/"

    def ask(method: str, url: str, body: dict | None, language: dict) -> dict:
        response = getattr(api, method)(url, body, format="json", **language)
        assert response["Content-Type"] == "application/problem+json"
        return {"status": response.status_code, **response.json()}

    bad_name = {
        "metadata": {"name": "Web_1"},
        "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256},
    }
    chinese = ask("post", base, bad_name, ZH)
    assert chinese["status"] == 400 and "小写字母、数字和连字符" in chinese["detail"] + str(
        chinese["errors"]
    )
    too_big = {
        "metadata": {"name": "big"},
        "spec": {"image": "tiny", "vcpus": 64, "memoryMiB": 256},
    }
    assert ask("post", base, too_big, ZH)["detail"].startswith("超出配额")
    assert ask("post", base, too_big, EN)["detail"].startswith("Quota exceeded")

    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    resize = {"spec": {"vcpus": 2}}
    chinese = ask("patch", f"{base}web-1/", resize, ZH)
    assert chinese["status"] == 409 and chinese["title"] == "冲突"
    assert chinese["detail"] == "调整大小前请先停止虚拟机。"
    english = ask("patch", f"{base}web-1/", resize, EN)
    assert english["detail"] == "Stop the VM before resizing it."
    start = ask("post", f"{base}web-1/start/", None, ZH)
    assert start["status"] == 409 and start["detail"] == "web-1 处于 Running 阶段，无法执行 start。"
    english = ask("post", f"{base}web-1/start/", None, EN)
    assert english["detail"] == "Cannot start web-1 while it is Running."
    assert VirtualMachine.objects.get(pk=vm.pk).vcpus == 1  # nothing changed


@pytest.mark.django_db
def test_the_fields_every_resource_inherits_are_named_in_the_readers_language(
    demo, make_host, tiny_image
):
    """uid, created, updated and resource_version come from ``portal.models.Resource``:
    Django admin labels them in Chinese on every resource's page."""
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    staff = Client()
    staff.force_login(demo.admin)
    page = f"/admin/compute/virtualmachine/{vm.pk}/change/"
    chinese = staff.get(page, **ZH).content.decode()
    for label in ("UID", "创建时间", "更新时间", "资源版本"):
        assert f"<label>{label}:</label>" in chinese, label
    english = staff.get(page, **EN).content.decode()
    for label in ("UID", "Created", "Updated", "Resource version"):
        assert f"<label>{label}:</label>" in english, label
    tenants = staff.get("/admin/tenants/tenant/", **ZH).content.decode()
    assert "创建时间" in tenants


# --- Model help texts, usage's field names and the API's own refusals -----------------
TRANSLATED_APPS = ("compute", "tenants", "monitoring", "usage")


@pytest.mark.parametrize("label", TRANSLATED_APPS)
def test_every_model_field_help_text_is_a_lazy_translation(label):
    """A plain ``help_text="..."`` is shown in English in every language: it must be
    ``_("...")`` (gettext_lazy), resolved when Django admin renders the form."""
    from django.apps import apps
    from django.db import models
    from django.utils.functional import Promise

    plain = [
        f"{model.__name__}.{field.name}"
        for model in apps.get_app_config(label).get_models()
        for field in model._meta.get_fields()
        if isinstance(field, models.Field)
        and field.help_text
        and not isinstance(field.help_text, Promise)
    ]
    assert plain == []


@pytest.mark.parametrize("label", ["usage", "monitoring"])
def test_every_model_and_model_field_has_a_translated_name(label):
    from django.apps import apps
    from django.db import models
    from django.utils.functional import Promise

    unnamed = [
        f"{model.__name__}.{field.name}"
        for model in apps.get_app_config(label).get_models()
        for field in model._meta.get_fields()
        if isinstance(field, models.Field)
        and not field.auto_created
        and not isinstance(field.verbose_name, Promise)
    ] + [
        model.__name__
        for model in apps.get_app_config(label).get_models()
        if not isinstance(model._meta.verbose_name, Promise)
        or not isinstance(model._meta.verbose_name_plural, Promise)
    ]
    assert unnamed == []


@pytest.mark.django_db
def test_django_admin_explains_fields_in_the_readers_language(demo):
    staff = Client()
    staff.force_login(demo.admin)
    chinese = staff.get("/admin/usage/pricelist/add/", **ZH).content.decode()
    assert "生效截止日期" in chinese and "适用的最后一天；留空：长期有效。" in chinese
    assert "Last day it applies" not in chinese
    english = staff.get("/admin/usage/pricelist/add/", **EN).content.decode()
    assert (
        "Effective to" in english and "Last day it applies; empty: until further notice." in english
    )
    host = staff.get("/admin/compute/host/add/", **ZH).content.decode()
    assert "vCPU 超分：可调度 vCPU 数 = cpus × 比率。" in host


@pytest.mark.django_db
def test_the_apis_own_refusals_follow_accept_language(demo):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(demo.alice)

    def problem(url: str, language: dict) -> dict:
        response = api.get(url, **language)
        assert response.status_code == 400
        return response.json()

    vms = "/api/v1/tenants/acme/virtualmachines/?phase=Nope"
    chinese = problem(vms, ZH)
    assert chinese["detail"] == "未知阶段。"
    assert chinese["errors"]["phase"][0].startswith("须为以下之一：Pending, ")
    english = problem(vms, EN)
    assert english["detail"] == "Unknown phase."
    assert english["errors"]["phase"][0].startswith("One of Pending, ")
    usage = "/api/v1/tenants/acme/usage/?start=2026-03-05&end=2026-03-01"
    assert problem(usage, ZH)["errors"]["end"] == ["须不早于开始日期。"]
    assert problem(usage, EN)["errors"]["end"] == ["On or after the start."]

    def missing(url: str, language: dict) -> str:
        response = api.get(url, **language)
        assert response.status_code == 404
        return response.json()["detail"]

    vm = "/api/v1/tenants/acme/virtualmachines/nope/"
    assert missing(vm, ZH) == "acme 中未找到虚拟机 'nope'。"
    assert missing(vm, EN) == "Virtual machine 'nope' not found in acme."
    assert missing("/api/v1/tenants/nowhere/virtualmachines/", ZH) == "未找到租户 'nowhere'。"


@pytest.mark.django_db
def test_our_admin_titles_columns_and_actions_follow_the_readers_language(demo):
    staff = Client()
    staff.force_login(demo.admin)
    chinese = staff.get("/admin/usage/pricelist/add/", **ZH).content.decode()
    assert "适用对象" in chinese and "每单位小时价格" in chinese
    assert "Prices per unit-hour" not in chinese
    tenants = staff.get("/admin/tenants/tenant/", **ZH).content.decode()
    assert "已用虚拟机" in tenants and "VMs used" not in tenants
    users = staff.get("/admin/auth/user/", **ZH).content.decode()
    assert "解锁所选用户的登录" in users
    english = staff.get("/admin/usage/pricelist/add/", **EN).content.decode()
    assert "Prices per unit-hour" in english and ">Who<" in english
    english_users = staff.get("/admin/auth/user/", **EN).content.decode()
    assert "Unlock sign-in of selected users" in english_users
