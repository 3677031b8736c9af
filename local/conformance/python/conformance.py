"""The broker conformance scenarios with the official Python client (rocketmq-python-client).

Usage: python conformance.py <endpoint> <scenario>...
Prints one line per scenario: RESULT <scenario> PASS|FAIL|SKIP [detail]. Topics and groups are named
as local/conformance names them for the client "python" (TopicName, GroupName).
"""
import logging
import sys
import time

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer, TransactionChecker, TransactionResolution)

endpoint, scenarios = sys.argv[1], sys.argv[2:]


def topic_of(s):
    return f"conf-python-{s}"


def group_of(s, suffix=""):
    return f"GID_conf_python_{s.replace('-', '_')}" + (f"_{suffix}" if suffix else "")


def config():
    return ClientConfiguration(endpoint, Credentials())


def producer(topic, opened, checker=None):
    p = Producer(config(), (topic,), checker)
    p.startup()
    opened.append(p)
    return p


def consumer(group, topic, expr, opened):
    c = SimpleConsumer(config(), group, {topic: FilterExpression(expr)}, await_duration=1)
    c.startup()
    opened.append(c)
    # Unlike the other clients' start, this one's does not wait for the settings handshake on the
    # telemetry stream (Client.__init_routes waits for push consumers only), and Apache RocketMQ's proxy
    # fails a receive that comes before it with INTERNAL_ERROR (a NullPointerException in
    # ReceiveMessageActivity); wait for the broker's answer to the settings as the other clients do.
    if not c._init_settings_event.wait(10):
        raise AssertionError("the broker never answered the consumer's settings")
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


def not_found(e):
    return "MESSAGE_NOT_FOUND" in str(e) or "40401" in str(e)


def receive_some(c, n, invisible_s, wait_s):
    """Returns the first non-empty answer to a receive of up to n messages."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            got = c.receive(n, invisible_s) or []
        except Exception as e:
            if not not_found(e):
                raise
            got = []
        if got:
            return got
    return []


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
    at = time.time()
    second = receive(c, 1, 10, 30)
    if len(second) != 1 or second[0].delivery_attempt != 2:
        raise AssertionError(f"redelivery {bodies(second)}")
    if time.time() - at < 1:
        raise AssertionError(f"redelivered after {time.time() - at:.3f} s, before its invisible time 2 s")
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


def max_attempts_dlq(s, opened):
    # The group allows 2 delivery attempts (local/conformance: dlqMaxAttempts).
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    poison_id = send(p, topic_of(s), "poison").message_id
    send(p, topic_of(s), "fine")
    # Every delivery is left to expire; after the group's max attempts the broker moves the message to
    # %DLQ%<group> instead of delivering it again.
    attempts, quiet_until = 0, 0
    deadline = time.time() + 40
    while time.time() < deadline and (not quiet_until or time.time() < quiet_until):
        for m in receive(c, 2, 2, 1.5):
            if m.body == b"fine":
                c.ack(m)
                continue
            attempts += 1
            if m.delivery_attempt != attempts:
                raise AssertionError(f"poison delivery {attempts} says attempt {m.delivery_attempt}")
            if attempts == 2:
                quiet_until = time.time() + 5
    if attempts != 2:
        raise AssertionError(f"poison delivered {attempts} times, want the group's max attempts 2")
    dlq, r, last = f"%DLQ%{group_of(s)}", None, None
    until = time.time() + 60
    # The proxy moves a message to the DLQ only when a receive of its group pops it once more
    # (ReceiveMessageActivity's filter), and the broker creates the DLQ topic then. The expired delivery
    # comes back through the broker's revive service, which can lag seconds behind, so the group keeps
    # receiving until the DLQ exists.
    while r is None and time.time() < until:
        again = receive(c, 1, 2, 1)
        if again:
            raise AssertionError(f"after the last attempt the group received {bodies(again)}, want nothing")
        try:
            r = consumer(group_of(s, "reader"), dlq, "*", opened)
        except Exception as e:
            last = e
            time.sleep(1)
    if r is None:
        raise AssertionError(f"dead-letter queue {dlq}: {last}")
    got = receive(r, 1, 10, 30)
    same(got, "poison")
    # The dead letter keeps the message's id and user properties; where it came from is the broker's
    # (SystemProperties.dead_letter_queue), not a user property.
    if got[0].message_id != poison_id or got[0].properties:
        raise AssertionError(f"dead letter {got[0].message_id} with user properties {got[0].properties}, "
                             f"want the poison message {poison_id} with none")
    r.ack(got[0])


def delay(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    # The client takes the delivery time in whole seconds (SystemProperties.delivery_timestamp.seconds).
    due = int(time.time()) + 3
    m = Message()
    m.topic, m.body = topic_of(s), b"later"
    m.delivery_timestamp = due
    p.send(m)
    got = receive(c, 1, 10, 15)
    same(got, "later")
    # The real broker's timer wheel ticks once a second (timerPrecisionMs 1000).
    early = due - time.time()
    if early > 1.1:
        raise AssertionError(f"delivered {early:.3f} s before its delivery time")
    c.ack(got[0])


def fifo_redelivery_attempt(batch, first):
    # The real broker reports one attempt for a FIFO batch, the lowest of its messages': a redelivery
    # that also brings a message new to the batch says 1 (local/conformance/goclient.go
    # fifoRedeliveryAttempt has the sources).
    firsts = {m.body for m in first}
    return 2 if all(m.body in firsts for m in batch) else 1


def fifo_group(s, opened):
    p = producer(topic_of(s), opened)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    for b in ("1", "2", "3"):
        m = Message()
        m.topic, m.body, m.message_group = topic_of(s), b.encode(), "order-1"
        p.send(m)
    # A FIFO group gets a message group's messages in order, and nothing of the group while a delivery
    # is unacknowledged (local/conformance/goclient.go says how the two brokers batch differently).
    first = receive_some(c, 3, 2, 15)
    first_at = time.time()
    if not first or first[0].body != b"1":
        raise AssertionError(f"first FIFO delivery {bodies(first)}, want 1 first")
    # Left unacknowledged: until it comes back, nothing of the group may be delivered.
    try:
        held = c.receive(3, 2) or []
    except Exception as e:
        if not not_found(e):
            raise
        held = []
    since = time.time() - first_at
    if held and (held[0].delivery_attempt != fifo_redelivery_attempt(held, first) or since < 1):
        raise AssertionError(f"received {bodies(held)} (attempt {held[0].delivery_attempt}) {since:.3f} s after "
                             f"{bodies(first)}, unacknowledged with invisible time 2 s")
    # The held receive may have long-polled into the redelivery; those messages come first.
    order, got = [], held
    deadline = time.time() + 40
    while len(order) < 3 and time.time() < deadline:
        if not got:
            got = receive_some(c, 3, 10, 1)
        want = fifo_redelivery_attempt(got, first)
        for m in got:
            if not order and m.delivery_attempt != want:
                raise AssertionError(f"message {m.body} came back with attempt {m.delivery_attempt} in {bodies(got)} "
                                     f"after {bodies(first)}, want {want}")
            if m.message_group != "order-1":
                raise AssertionError(f"message group {m.message_group}")
            order.append(m.body.decode())
            c.ack(m)
        got = []
    if order != ["1", "2", "3"]:
        raise AssertionError(f"FIFO order after the redelivery {order}, want 1,2,3")


class Checker(TransactionChecker):
    def __init__(self):
        self.checked = set()

    def check(self, message):
        self.checked.add(message.body.decode())
        if message.body == b"unknown-then-commit":
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def transaction(s, opened):
    checker = Checker()
    p = producer(topic_of(s), opened, checker)
    c = consumer(group_of(s), topic_of(s), "*", opened)
    for body, end in (("committed", "commit"), ("rolled-back", "rollback"), ("unknown-then-commit", None),
                      ("unknown-then-rollback", None)):
        tx = p.begin_transaction()
        m = Message()
        m.topic, m.body = topic_of(s), body.encode()
        p.send(m, tx)
        if end:
            getattr(tx, end)()
    got = receive(c, 2, 20, 40)
    same(got, "committed", "unknown-then-commit")
    for x in got:
        c.ack(x)
    # Only the outcome is the contract (goclient.go: the real broker may also check back a transaction
    # its producer already ended).
    if "unknown-then-commit" not in checker.checked:
        raise AssertionError("the broker never checked back the open transaction")


def error_chain(e):
    chain, x = [], e
    while x is not None:
        chain.append(f"{type(x).__name__}: {x}")
        x = x.__cause__ or x.__context__
    return chain


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def unknown_topic(s, opened):
    # gRPC clients get no auto-created topics. Unlike the other clients, this one starts a producer
    # whose topic has no route: its route manager logs the route query's error (the proxy's
    # TOPIC_NOT_FOUND) and raises only "failed to fetch topic ... route" on the first send.
    topic = "conf-python-never-created"
    records = Records()
    log = logging.getLogger("rocketmq-python-client")
    log.addHandler(records)
    try:
        p = Producer(config(), (topic,))
        p.startup()
        opened.append(p)
        send(p, topic, "nowhere")
    except Exception as e:
        chain = error_chain(e) + records.lines
        if any("TOPIC_NOT_FOUND" in t or "40402" in t for t in chain):
            return
        raise AssertionError(f"failed with {' <- '.join(chain)}, want TOPIC_NOT_FOUND")
    finally:
        log.removeHandler(records)
    raise AssertionError("a message was sent to a topic that does not exist")


# Restart durability in two phases around one broker restart shared by every client (local/conformance:
# RunMatrix): before it a message is received and acknowledged and three more are sent; after it the
# three are delivered and the acknowledged one is not.
def restart_before(s, opened):
    t, g = topic_of("restart-durability"), group_of("restart-durability")
    p = producer(t, opened)
    c = consumer(g, t, "*", opened)
    send(p, t, "acked")
    got = receive(c, 1, 30, 15)
    same(got, "acked")
    c.ack(got[0])
    for b in ("kept-1", "kept-2", "kept-3"):
        send(p, t, b)


def restart_after(s, opened):
    t, g = topic_of("restart-durability"), group_of("restart-durability")
    c = consumer(g, t, "*", opened)
    got = receive(c, 3, 60, 40)
    for x in got:
        c.ack(x)
    more = receive(c, 1, 60, 3)
    same(got + more, "kept-1", "kept-2", "kept-3")


RUN = {
    "send-receive-ack": send_receive_ack,
    "redelivery-after-invisible": redelivery,
    "change-invisible-duration": change_invisible,
    "tag-filter": tag_filter,
    "two-groups": two_groups,
    "max-attempts-dlq": max_attempts_dlq,
    "delay": delay,
    "fifo-group": fifo_group,
    "transaction-check-back": transaction,
    "unknown-topic": unknown_topic,
    "restart-durability/before": restart_before,
    "restart-durability/after": restart_after,
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
