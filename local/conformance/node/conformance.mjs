// The broker conformance scenarios with the official Node.js client (rocketmq-client-nodejs).
// Usage: node conformance.mjs <endpoint> <scenario>...
// Prints one line per scenario: RESULT <scenario> PASS|FAIL|SKIP [detail]. Topics and groups are named
// as local/conformance names them for the client "node" (TopicName, GroupName).
import rmq from 'rocketmq-client-nodejs';

const { Producer, SimpleConsumer } = rmq;
const [endpoint, ...scenarios] = process.argv.slice(2);
const topicOf = (s) => `conf-node-${s}`;
const groupOf = (s, suffix) => `GID_conf_node_${s.replaceAll('-', '_')}${suffix ? '_' + suffix : ''}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function producer(topic, checker) {
  const p = new Producer({ endpoints: endpoint, topics: [topic], checker });
  await p.startup();
  return p;
}

async function consumer(group, topic, expr) {
  const c = new SimpleConsumer({ endpoints: endpoint, consumerGroup: group, subscriptions: new Map().set(topic, expr), awaitDuration: 1000 });
  await c.startup();
  return c;
}

// receive polls until n messages arrived or waitMs is over.
async function receive(c, n, invisibleMs, waitMs) {
  const got = [];
  const deadline = Date.now() + waitMs;
  while (got.length < n && Date.now() < deadline) {
    try {
      got.push(...(await c.receive(n - got.length, invisibleMs)));
    } catch (e) {
      if (!String(e).includes('MESSAGE_NOT_FOUND') && e.code !== 40401) throw e;
    }
  }
  return got;
}

// receiveSome returns the first non-empty answer to a receive of up to n messages.
async function receiveSome(c, n, invisibleMs, waitMs) {
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    try {
      const ms = await c.receive(n, invisibleMs);
      if (ms.length) return ms;
    } catch (e) {
      if (!String(e).includes('MESSAGE_NOT_FOUND') && e.code !== 40401) throw e;
    }
  }
  return [];
}

const bodies = (ms) => ms.map((m) => m.body.toString()).sort();
// The real broker reports one attempt for a FIFO batch, the lowest of its messages': a redelivery that
// also brings a message new to the batch says 1 (local/conformance/goclient.go fifoRedeliveryAttempt has the sources).
const fifoRedeliveryAttempt = (batch, first) => (batch.every((m) => bodies(first).includes(m.body.toString())) ? 2 : 1);
function same(got, ...want) {
  if (JSON.stringify(bodies(got)) !== JSON.stringify([...want].sort())) {
    throw new Error(`got ${JSON.stringify(bodies(got))}, want ${JSON.stringify(want)}`);
  }
}

const run = {
  async 'send-receive-ack'(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    const receipt = await p.send({ topic: topicOf(s), tag: 't1', keys: ['k1'], properties: new Map([['color', 'red']]), body: Buffer.from('hello') });
    await p.send({ topic: topicOf(s), body: Buffer.from('b') });
    const got = await receive(c, 2, 10000, 15000);
    same(got, 'hello', 'b');
    const m = got.find((x) => x.body.toString() === 'hello');
    if (m.messageId !== receipt.messageId || m.tag !== 't1' || m.properties.get('color') !== 'red' || m.deliveryAttempt !== 1) {
      throw new Error(`message came back changed: ${m.messageId} ${m.tag} ${[...m.properties]} ${m.deliveryAttempt}`);
    }
    for (const x of got) await c.ack(x);
    const more = await receive(c, 1, 2000, 6000);
    if (more.length) throw new Error(`acknowledged messages delivered again: ${bodies(more)}`);
  },
  async 'redelivery-after-invisible'(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    await p.send({ topic: topicOf(s), body: Buffer.from('again') });
    const first = await receive(c, 1, 2000, 15000);
    if (first.length !== 1) throw new Error('no first delivery');
    const at = Date.now();
    const second = await receive(c, 1, 10000, 30000);
    if (second.length !== 1 || second[0].deliveryAttempt !== 2) throw new Error(`redelivery: ${bodies(second)} attempt ${second[0]?.deliveryAttempt}`);
    if (Date.now() - at < 1000) throw new Error(`redelivered after ${Date.now() - at} ms, before its invisible time 2 s`);
    await c.ack(second[0]);
  },
  async 'change-invisible-duration'(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    await p.send({ topic: topicOf(s), body: Buffer.from('x') });
    const got = await receive(c, 1, 60000, 15000);
    if (got.length !== 1) throw new Error('no first delivery');
    await c.changeInvisibleDuration(got[0], 2000);
    const again = await receive(c, 1, 10000, 30000);
    if (again.length !== 1) throw new Error('not redelivered after the shortened invisible time');
    await c.ack(again[0]);
  },
  async 'tag-filter'(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), 'a||b'));
    for (const tag of ['a', 'b', 'c']) await p.send({ topic: topicOf(s), tag, body: Buffer.from(`tag-${tag}`) });
    const got = await receive(c, 2, 20000, 15000);
    for (const x of got) await c.ack(x);
    const more = await receive(c, 1, 10000, 2000);
    same([...got, ...more], 'tag-a', 'tag-b');
  },
  async 'two-groups'(s, open) {
    const p = open(await producer(topicOf(s)));
    const cs = [open(await consumer(groupOf(s, 'a'), topicOf(s), '*')), open(await consumer(groupOf(s, 'b'), topicOf(s), '*'))];
    for (const b of ['1', '2', '3']) await p.send({ topic: topicOf(s), body: Buffer.from(b) });
    for (const c of cs) {
      const got = await receive(c, 3, 10000, 15000);
      same(got, '1', '2', '3');
      for (const x of got) await c.ack(x);
    }
  },
  async 'max-attempts-dlq'(s, open) {
    // The group allows 2 delivery attempts (local/conformance: dlqMaxAttempts).
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    const poison = await p.send({ topic: topicOf(s), body: Buffer.from('poison') });
    let attempts = 0;
    const deadline = Date.now() + 40000;
    let quietUntil = 0;
    while (Date.now() < deadline && (!quietUntil || Date.now() < quietUntil)) {
      for (const m of await receive(c, 1, 2000, 1500)) {
        attempts++;
        if (m.deliveryAttempt !== attempts) throw new Error(`delivery ${attempts} says attempt ${m.deliveryAttempt}`);
        if (attempts === 2) quietUntil = Date.now() + 5000;
      }
    }
    if (attempts !== 2) throw new Error(`poison delivered ${attempts} times, want 2`);
    let r;
    // The proxy moves a message to the DLQ only when a receive of its group pops it once more
    // (ReceiveMessageActivity's filter), and the broker creates the DLQ topic then. The expired delivery
    // comes back through the broker's revive service, which can lag seconds behind, so the group keeps
    // receiving until the DLQ exists.
    for (const until = Date.now() + 60000; !r && Date.now() < until; ) {
      const again = await receive(c, 1, 2000, 1000);
      if (again.length) throw new Error(`after the last attempt the group received ${bodies(again)}, want nothing`);
      try {
        r = open(await consumer(groupOf(s, 'reader'), `%DLQ%${groupOf(s)}`, '*'));
      } catch (e) {
        await sleep(1000);
      }
    }
    if (!r) throw new Error('no dead-letter queue');
    const got = await receive(r, 1, 10000, 30000);
    same(got, 'poison');
    // The dead letter keeps the message's id and user properties; where it came from is the broker's
    // (SystemProperties.dead_letter_queue), not a user property.
    const props = [...(got[0].properties ?? new Map())];
    if (got[0].messageId !== poison.messageId || props.length) {
      throw new Error(`dead letter ${got[0].messageId} with user properties ${JSON.stringify(props)}, want the poison message ${poison.messageId} with none`);
    }
    await r.ack(got[0]);
  },
  async delay(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    const due = Date.now() + 3000;
    await p.send({ topic: topicOf(s), deliveryTimestamp: new Date(due), body: Buffer.from('later') });
    const got = await receive(c, 1, 10000, 15000);
    same(got, 'later');
    if (due - Date.now() > 1100) throw new Error(`delivered ${due - Date.now()} ms before its delivery time`);
    await c.ack(got[0]);
  },
  async 'fifo-group'(s, open) {
    const p = open(await producer(topicOf(s)));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    for (const b of ['1', '2', '3']) await p.send({ topic: topicOf(s), messageGroup: 'order-1', body: Buffer.from(b) });
    // A FIFO group gets a message group's messages in order, and nothing of the group while a delivery
    // is unacknowledged (local/conformance/goclient.go says how the two brokers batch differently).
    const first = await receiveSome(c, 3, 2000, 15000);
    const firstAt = Date.now();
    if (!first.length || first[0].body.toString() !== '1') throw new Error(`first FIFO delivery ${bodies(first)}, want 1 first`);
    // Left unacknowledged: until it comes back, nothing of the group may be delivered.
    let held = [];
    try {
      held = await c.receive(3, 2000);
    } catch (e) {
      if (!String(e).includes('MESSAGE_NOT_FOUND') && e.code !== 40401) throw e;
    }
    const since = Date.now() - firstAt;
    if (held.length && (held[0].deliveryAttempt !== fifoRedeliveryAttempt(held, first) || since < 1000)) {
      throw new Error(`received ${bodies(held)} (attempt ${held[0].deliveryAttempt}) ${since} ms after ${bodies(first)}, unacknowledged with invisible time 2 s`);
    }
    // The held receive may have long-polled into the redelivery; those messages come first.
    const order = [];
    let got = held;
    for (const deadline = Date.now() + 40000; order.length < 3 && Date.now() < deadline; got = []) {
      if (!got.length) got = await receiveSome(c, 3, 10000, 1000);
      const want = fifoRedeliveryAttempt(got, first);
      for (const m of got) {
        if (!order.length && m.deliveryAttempt !== want) {
          throw new Error(`message ${m.body} came back with attempt ${m.deliveryAttempt} in ${bodies(got)} after ${bodies(first)}, want ${want}`);
        }
        if (m.messageGroup !== 'order-1') throw new Error(`message group ${m.messageGroup}`);
        order.push(m.body.toString());
        await c.ack(m);
      }
    }
    if (order.join(',') !== '1,2,3') throw new Error(`FIFO order after the redelivery ${order}, want 1,2,3`);
  },
  async 'transaction-check-back'(s, open) {
    // TransactionResolution in definition.proto: COMMIT 1, ROLLBACK 2 (the package does not export it).
    const COMMIT = 1, ROLLBACK = 2;
    const checked = new Set();
    const checker = { async check(m) { checked.add(m.body.toString()); return m.body.toString() === 'unknown-then-commit' ? COMMIT : ROLLBACK; } };
    const p = open(await producer(topicOf(s), checker));
    const c = open(await consumer(groupOf(s), topicOf(s), '*'));
    for (const [body, end] of [['committed', 'commit'], ['rolled-back', 'rollback'], ['unknown-then-commit'], ['unknown-then-rollback']]) {
      const tx = p.beginTransaction();
      await p.send({ topic: topicOf(s), body: Buffer.from(body) }, tx);
      if (end) await tx[end]();
    }
    const got = await receive(c, 2, 20000, 40000);
    same(got, 'committed', 'unknown-then-commit');
    for (const x of got) await c.ack(x);
    // Only the outcome is the contract (goclient.go: the real broker may also check back a transaction
    // its producer already ended).
    if (!checked.has('unknown-then-commit')) throw new Error('the broker never checked back the open transaction');
  },
  // Restart durability in two phases around one broker restart shared by every client (local/conformance:
  // RunMatrix): before it a message is received and acknowledged and three more are sent; after it the
  // three are delivered and the acknowledged one is not.
  async 'restart-durability/before'(s, open) {
    const t = topicOf('restart-durability'), g = groupOf('restart-durability');
    const p = open(await producer(t));
    const c = open(await consumer(g, t, '*'));
    await p.send({ topic: t, body: Buffer.from('acked') });
    const got = await receive(c, 1, 30000, 15000);
    same(got, 'acked');
    await c.ack(got[0]);
    for (const b of ['kept-1', 'kept-2', 'kept-3']) await p.send({ topic: t, body: Buffer.from(b) });
  },
  async 'restart-durability/after'(s, open) {
    const t = topicOf('restart-durability'), g = groupOf('restart-durability');
    const c = open(await consumer(g, t, '*'));
    const got = await receive(c, 3, 60000, 40000);
    for (const x of got) await c.ack(x);
    const more = await receive(c, 1, 60000, 3000);
    same([...got, ...more], 'kept-1', 'kept-2', 'kept-3');
  },
  async 'unknown-topic'() {
    const p = new Producer({ endpoints: endpoint, topics: ['conf-node-never-created'] });
    try {
      await p.startup();
    } catch (e) {
      // The client wraps the route error (BaseClient: Error('Failed to fetch topic routes', {cause})).
      const chain = [];
      for (let x = e; x; x = x.cause) chain.push(`${x} ${x.code ?? ''}`);
      if (chain.some((t) => t.includes('TOPIC_NOT_FOUND') || t.includes('40402'))) return;
      throw new Error(`startup failed with ${chain.join(' <- ')}, want TOPIC_NOT_FOUND`);
    } finally {
      await p.shutdown().catch(() => {});
    }
    throw new Error('a producer started on a topic that does not exist');
  },
};

for (const s of scenarios) {
  if (!run[s]) {
    console.log(`RESULT ${s} SKIP not written for the Node.js client`);
    continue;
  }
  const opened = [];
  try {
    await run[s](s, (x) => (opened.push(x), x));
    console.log(`RESULT ${s} PASS`);
  } catch (e) {
    console.log(`RESULT ${s} FAIL ${String(e?.stack ?? e).split('\n').slice(0, 3).join(' | ')}`);
  } finally {
    for (const x of opened.reverse()) await x.shutdown().catch(() => {});
  }
}
process.exit(0);
