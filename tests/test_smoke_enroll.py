from tests.support.device import TestDevice


def test_enroll_and_idle(client, school, container):
    dev = TestDevice(client).enroll(school["id"], school["token"])
    r = dev.connect("Idle")
    assert r.status_code == 200 and r.content == b""
    d = container.devices.get(dev.udid)
    assert d["enrollment_state"] == "enrolled"
    assert d["school_id"] == school["id"]
