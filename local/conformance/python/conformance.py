"""The broker conformance scenarios with the official Python client (rocketmq-python-client).

Usage: python conformance.py <endpoint> <scenario>...
Prints one line per scenario: RESULT <scenario> PASS|FAIL|SKIP [detail]. Topics and groups are named
as local/conformance names them for the client "python" (TopicName, GroupName).
"""
import sys
import time

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer)

endpoint, scenarios = sys.argv[1], sys.argv[2:]


def topic_of(s):
    return f"conf-python-{s}"


def group_of(s, suffix=""):
    return f"GID_conf_python_{s.replace('-', '_')}" + (f"_{suffix}" if suffix else "")


def config():
    return ClientConfiguration(endpoint, Credentials())


def producer(topic, opened):
    p = Producer(config(), (topic,))
    p.startup()
    opened.append(p)
    return p


def consumer(group, topic, expr, opened):
    c = SimpleConsumer(config(), group, {topic: FilterExpression(expr)}, await_duration=1)
    c.startup()
    opened.append(c)
    return c


def send(p, topic, body, tag=None):
    m = Message()
    m.topic = topic
    m.body = body.encode()
    if tag:
        m.tag = tag
    return p.send(m)


def receive(c, n, invisible_s, wait_s):
    """Polls until n messages arrived or wait_s is over."""
    got = []
    deadline = time.time() + wait_s
    while len(got) < n and time.time() < deadline:
        try:
            got.extend(c.receive(n - len(got), invisible_s) or [])
        except Exception as e:  # an empty long poll answers MESSAGE_NOT_FOUND
            if "MESSAGE_NOT_FOUND" not in str(e) and "40401" not in str(e):
                raise
    return got


def bodies(ms):
    return sorted(m.body.decode() for m in ms)


def same(got, *want):
    if bodies(got) != sorted(want):
        raise AssertionError(f"got {bodies(got)}, want {sorted(want)}")


def send_receive_ack(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    m = Message()
    m.topic, m.body, m.tag = topic_of(s), b"hello", "t1"
    m.add_property("color", "red")
    receipt = p.send(m)
    send(p, topic_of(s), "b")
    got = receive(c, 2, 10, 15)
    same(got, "hello", "b")
    h = next(x for x in got if x.body == b"hello")
    if h.message_id != receipt.message_id or h.tag != "t1" or h.properties.get("color") != "red" or h.delivery_attempt != 1:
        raise AssertionError(f"message came back changed: {h.message_id} {h.tag} {h.properties} {h.delivery_attempt}")
    for x in got:
        c.ack(x)
    more = receive(c, 1, 2, 6)
    if more:
        raise AssertionError(f"acknowledged messages delivered again: {bodies(more)}")


def redelivery(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    send(p, topic_of(s), "again")
    if len(receive(c, 1, 2, 15)) != 1:
        raise AssertionError("no first delivery")
    second = receive(c, 1, 10, 30)
    if len(second) != 1 or second[0].delivery_attempt != 2:
        raise AssertionError(f"redelivery {bodies(second)}")
    c.ack(second[0])


def change_invisible(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    send(p, topic_of(s), "x")
    got = receive(c, 1, 60, 15)
    if len(got) != 1:
        raise AssertionError("no first delivery")
    c.change_invisible_duration(got[0], 2)
    again = receive(c, 1, 10, 30)
    if len(again) != 1:
        raise AssertionError("not redelivered after the shortened invisible time")
    c.ack(again[0])


def tag_filter(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "a||b", opened)
    for tag in ("a", "b", "c"):
        send(p, topic_of(s), f"tag-{tag}", tag)
    got = receive(c, 2, 20, 15)
    for x in got:
        c.ack(x)
    more = receive(c, 1, 10, 2)
    same(got + more, "tag-a", "tag-b")


def two_groups(s, opened):
    p = producer(topic_of(s), opened)
    cs = [consumer(group_of(s, g), topic_of(s), "*", opened) for g in ("a", "b")]
    for b in ("1", "2", "3"):
        send(p, topic_of(s), b)
    for c in cs:
        got = receive(c, 3, 10, 15)
        same(got, "1", "2", "3")
        for x in got:
            c.ack(x)


RUN = {
    "send-receive-ack": send_receive_ack,
    "redelivery-after-invisible": redelivery,
    "change-invisible-duration": change_invisible,
    "tag-filter": tag_filter,
    "two-groups": two_groups,
}

for s in scenarios:
    if s not in RUN:
        print(f"RESULT {s} SKIP not written for the Python client", flush=True)
        continue
    opened = []
    try:
        RUN[s](s, opened)
        print(f"RESULT {s} PASS", flush=True)
    except Exception as e:
        print(f"RESULT {s} FAIL {type(e).__name__}: {str(e)[:300]}".replace("\n", " | "), flush=True)
    finally:
        for x in reversed(opened):
            try:
                x.shutdown()
            except Exception:
                pass
sys.stdout.flush()
