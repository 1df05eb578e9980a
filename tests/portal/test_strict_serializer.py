"""Input serializers (portal.api.resources.StrictSerializer) copy their declared fields
cheaply; each instance must still own its fields: bound to it, changed without touching
another instance, and validating side by side from many threads with the answers each
body alone gets."""

from __future__ import annotations

import threading

from django.utils import translation
from rest_framework import serializers

from compute.api import VMCreateSerializer
from portal.api.resources import StrictSerializer


def vm_body(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"app": name}}, "spec": {"image": "tiny", **spec}}


def test_each_instance_has_its_own_fields_bound_to_it():
    first, second = VMCreateSerializer(data={}), VMCreateSerializer(data={})
    for outer in ("metadata", "spec"):
        one, other = first.fields[outer], second.fields[outer]
        assert one is not other and one.parent is first and other.parent is second
        for name, field in one.fields.items():
            assert field is not other.fields[name]
            assert field.parent is one and other.fields[name].parent is other


def test_a_change_to_one_instances_field_does_not_reach_another():
    class Sized(StrictSerializer):
        name = serializers.CharField(max_length=8)
        size = serializers.IntegerField(min_value=1)

    changed = Sized(data={"name": "web", "size": 5})
    changed.fields["size"].required = False
    changed.fields["size"].validators.append(
        lambda value: (_ for _ in ()).throw(serializers.ValidationError("Too big."))
    )
    assert not changed.is_valid()
    assert changed.errors == {"size": ["Too big."]}

    untouched = Sized(data={"name": "web", "size": 5})
    assert untouched.is_valid(), untouched.errors
    missing = Sized(data={"name": "web"})
    assert not missing.is_valid()
    assert missing.errors == {"size": ["This field is required."]}


def test_bodies_validated_from_many_threads_get_the_answers_each_gets_alone():
    bodies = [
        vm_body("web", vcpus=1, memoryMiB=64),
        vm_body("db", vcpus=2, memoryMiB=128, networks=["a", "b"]),
        vm_body("bad", vcpus="many", memoryMiB=64),
        {"metadata": {"name": "x", "colour": "red"}, "spec": {"image": "tiny"}},
        vm_body("nolabels", vcpus=1, memoryMiB=64, nodeSelector={"rack": 1}),
    ]

    def answer(body: dict):
        serializer = VMCreateSerializer(data=body)
        valid = serializer.is_valid()
        return valid, serializer.validated_data if valid else serializer.errors

    alone = [answer(body) for body in bodies]
    assert [valid for valid, _ in alone] == [True, True, False, False, True]
    wrong: list = []

    def validate(offset: int) -> None:
        for n in range(300):
            index = (offset + n) % len(bodies)
            if answer(bodies[index]) != alone[index]:
                wrong.append((index, answer(bodies[index])))

    threads = [threading.Thread(target=validate, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_nested_list_of_serializers_sees_its_own_requests_context():
    class Port(StrictSerializer):
        port = serializers.IntegerField()

        def validate(self, attrs):
            if attrs["port"] in self.context["taken"]:
                raise serializers.ValidationError({"port": ["Taken in this tenant."]})
            return attrs

    class Service(StrictSerializer):
        ports = Port(many=True)

    first = Service(data={"ports": [{"port": 80}]}, context={"taken": {80}})
    second = Service(data={"ports": [{"port": 80}]}, context={"taken": {443}})
    assert not first.is_valid()
    assert first.errors == {"ports": {0: {"port": ["Taken in this tenant."]}}}
    assert second.is_valid(), second.errors


def test_a_limits_message_is_in_each_requests_own_language():
    """DRF words a limit's message once, on first use: a copy shared between instances
    answered an English request in the Chinese of the request before it."""

    class Limited(StrictSerializer):
        size = serializers.IntegerField(max_value=10)
        names = serializers.ListField(child=serializers.CharField(max_length=3), max_length=2)

    def errors(language: str) -> dict:
        with translation.override(language):
            serializer = Limited(data={"size": 11, "names": ["a", "b", "c"]})
            assert not serializer.is_valid()
            return {key: [str(m) for m in value] for key, value in serializer.errors.items()}

    chinese = errors("zh-hans")
    english = errors("en")
    assert english == {
        "size": ["Ensure this value is less than or equal to 10."],
        "names": ["Ensure this field has no more than 2 elements."],
    }
    assert chinese["size"] != english["size"]
    assert errors("en") == english and errors("zh-hans") == chinese
    # A list's item (its child's own limit) is worded per request too.
    with translation.override("zh-hans"):
        Limited(data={"size": 1, "names": ["abcd"]}).is_valid()
    with translation.override("en"):
        item = Limited(data={"size": 1, "names": ["abcd"]})
        assert not item.is_valid()
    assert str(item.errors["names"][0][0]) == "Ensure this field has no more than 3 characters."
