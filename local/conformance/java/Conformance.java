// The broker conformance scenarios with the official Java client (rocketmq-client-java, pinned in
// pom.xml). Usage: java -cp .cache/classes:.cache/lib/* Conformance <endpoint> <scenario>...
// Prints one line per scenario: RESULT <scenario> PASS|FAIL|SKIP [detail]. Topics and groups are named
// as local/conformance names them for the client "java" (TopicName, GroupName). All scenarios run in
// this one JVM, one after another.

import java.io.Closeable;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientException;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.FilterExpressionType;
import org.apache.rocketmq.client.apis.consumer.SimpleConsumer;
import org.apache.rocketmq.client.apis.message.Message;
import org.apache.rocketmq.client.apis.message.MessageBuilder;
import org.apache.rocketmq.client.apis.message.MessageView;
import org.apache.rocketmq.client.apis.producer.Producer;
import org.apache.rocketmq.client.apis.producer.ProducerBuilder;
import org.apache.rocketmq.client.apis.producer.SendReceipt;
import org.apache.rocketmq.client.apis.producer.Transaction;
import org.apache.rocketmq.client.apis.producer.TransactionChecker;
import org.apache.rocketmq.client.apis.producer.TransactionResolution;

public class Conformance {
  static String endpoint;
  static final ClientServiceProvider provider = ClientServiceProvider.loadService();
  static final int DLQ_MAX_ATTEMPTS = 2; // local/conformance: dlqMaxAttempts
  static final Duration INVISIBLE = Duration.ofSeconds(2); // scenarioInvisble

  interface Body {
    void run(String s, List<Closeable> opened) throws Exception;
  }

  static String topicOf(String s) {
    return "conf-java-" + s;
  }

  static String groupOf(String s, String suffix) {
    return "GID_conf_java_" + s.replace('-', '_') + (suffix.isEmpty() ? "" : "_" + suffix);
  }

  static ClientConfiguration config() {
    // The client speaks TLS unless told otherwise; both brokers here listen in plain text.
    return ClientConfiguration.newBuilder().setEndpoints(endpoint).enableSsl(false).setRequestTimeout(Duration.ofSeconds(5)).build();
  }

  static Producer producer(List<Closeable> opened, String topic, TransactionChecker checker) throws ClientException {
    ProducerBuilder b = provider.newProducerBuilder().setClientConfiguration(config()).setTopics(topic);
    if (checker != null) {
      b.setTransactionChecker(checker);
    }
    Producer p = b.build();
    opened.add(p);
    return p;
  }

  static SimpleConsumer consumer(List<Closeable> opened, String group, String topic, String expr) throws ClientException {
    SimpleConsumer c = provider.newSimpleConsumerBuilder().setClientConfiguration(config()).setConsumerGroup(group)
        .setAwaitDuration(Duration.ofSeconds(1))
        .setSubscriptionExpressions(Collections.singletonMap(topic, new FilterExpression(expr, FilterExpressionType.TAG)))
        .build();
    opened.add(c);
    return c;
  }

  static Message message(String topic, String body, String tag) {
    MessageBuilder b = provider.newMessageBuilder().setTopic(topic).setBody(body.getBytes(StandardCharsets.UTF_8));
    if (tag != null) {
      b.setTag(tag);
    }
    return b.build();
  }

  static void send(Producer p, String topic, String tag, String... bodies) throws ClientException {
    for (String b : bodies) {
      p.send(message(topic, b, tag));
    }
  }

  static boolean notFound(Throwable e) {
    for (Throwable x = e; x != null; x = x.getCause()) {
      String m = String.valueOf(x.getMessage());
      if (m.contains("MESSAGE_NOT_FOUND") || m.contains("40401")) {
        return true;
      }
    }
    return false;
  }

  // receive polls until n messages arrived or wait is over.
  static List<MessageView> receive(SimpleConsumer c, int n, Duration invisible, Duration wait) throws ClientException {
    List<MessageView> got = new ArrayList<>();
    long deadline = System.currentTimeMillis() + wait.toMillis();
    while (got.size() < n && System.currentTimeMillis() < deadline) {
      try {
        got.addAll(c.receive(Math.min(n - got.size(), 32), invisible));
      } catch (ClientException e) {
        if (!notFound(e)) {
          throw e;
        }
      }
    }
    return got;
  }

  // receiveSome returns the first non-empty answer to a receive of up to n messages.
  static List<MessageView> receiveSome(SimpleConsumer c, int n, Duration invisible, Duration wait) throws ClientException {
    long deadline = System.currentTimeMillis() + wait.toMillis();
    while (System.currentTimeMillis() < deadline) {
      try {
        List<MessageView> got = c.receive(n, invisible);
        if (!got.isEmpty()) {
          return got;
        }
      } catch (ClientException e) {
        if (!notFound(e)) {
          throw e;
        }
      }
    }
    return new ArrayList<>();
  }

  static String body(MessageView m) {
    return StandardCharsets.UTF_8.decode(m.getBody().duplicate()).toString();
  }

  static List<String> bodies(List<MessageView> ms) {
    List<String> out = new ArrayList<>();
    for (MessageView m : ms) {
      out.add(body(m));
    }
    return out;
  }

  static void same(List<MessageView> got, String... want) {
    List<String> g = bodies(got);
    Collections.sort(g);
    List<String> w = new ArrayList<>(List.of(want));
    Collections.sort(w);
    if (!g.equals(w)) {
      throw new AssertionError("got " + bodies(got) + ", want " + w);
    }
  }

  static void check(boolean ok, String what) {
    if (!ok) {
      throw new AssertionError(what);
    }
  }

  static void ackAll(SimpleConsumer c, List<MessageView> ms) throws ClientException {
    for (MessageView m : ms) {
      c.ack(m);
    }
  }

  static void sendReceiveAck(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    SendReceipt r = p.send(provider.newMessageBuilder().setTopic(topicOf(s)).setBody("hello".getBytes(StandardCharsets.UTF_8))
        .setTag("t1").setKeys("k1", "k2").addProperty("color", "red").build());
    send(p, topicOf(s), null, "b", "c");
    List<MessageView> got = receive(c, 3, Duration.ofSeconds(10), Duration.ofSeconds(15));
    same(got, "hello", "b", "c");
    for (MessageView m : got) {
      if (!body(m).equals("hello")) {
        continue;
      }
      check(m.getMessageId().toString().equals(r.getMessageId().toString()) && m.getTag().orElse("").equals("t1")
          && String.join(",", new ArrayList<>(m.getKeys())).equals("k1,k2") && "red".equals(m.getProperties().get("color"))
          && m.getDeliveryAttempt() == 1,
          "message came back changed: id " + m.getMessageId() + " (sent " + r.getMessageId() + ") tag " + m.getTag() + " keys "
              + m.getKeys() + " props " + m.getProperties() + " attempt " + m.getDeliveryAttempt());
    }
    ackAll(c, got);
    // Acknowledged messages never come back, even after their invisible time.
    List<MessageView> more = receive(c, 1, INVISIBLE, Duration.ofSeconds(6));
    check(more.isEmpty(), "acknowledged messages delivered again: " + bodies(more));
  }

  static void redelivery(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    send(p, topicOf(s), null, "again");
    List<MessageView> first = receive(c, 1, INVISIBLE, Duration.ofSeconds(15));
    check(first.size() == 1, "first delivery: " + bodies(first));
    long at = System.currentTimeMillis();
    List<MessageView> second = receive(c, 1, Duration.ofSeconds(10), Duration.ofSeconds(30));
    check(second.size() == 1, "no redelivery after the invisible time: " + bodies(second));
    long waited = System.currentTimeMillis() - at;
    check(waited >= INVISIBLE.toMillis() / 2, "redelivered after " + waited + " ms, before its invisible time");
    check(second.get(0).getDeliveryAttempt() == 2, "redelivery attempt " + second.get(0).getDeliveryAttempt() + ", want 2");
    // The first receipt handle is stale now; the new one acknowledges.
    c.ack(second.get(0));
  }

  static void changeInvisible(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    send(p, topicOf(s), null, "x");
    List<MessageView> got = receive(c, 1, Duration.ofMinutes(1), Duration.ofSeconds(15));
    check(got.size() == 1, "first delivery: " + bodies(got));
    // Shortened from a minute to two seconds: it comes back well before the minute.
    c.changeInvisibleDuration(got.get(0), INVISIBLE);
    List<MessageView> again = receive(c, 1, Duration.ofSeconds(10), Duration.ofSeconds(30));
    check(again.size() == 1, "not redelivered after the shortened invisible time: " + bodies(again));
    c.ack(again.get(0));
  }

  static void maxAttemptsDLQ(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    String poisonId = p.send(message(topicOf(s), "poison", null)).getMessageId().toString();
    send(p, topicOf(s), null, "fine");
    // Every delivery is left to expire; after the group's max attempts the broker moves the message
    // to %DLQ%<group> instead of delivering it again.
    int attempts = 0;
    long deadline = System.currentTimeMillis() + 40000, quietUntil = 0;
    while (System.currentTimeMillis() < deadline && (quietUntil == 0 || System.currentTimeMillis() < quietUntil)) {
      for (MessageView m : receive(c, 2, INVISIBLE, Duration.ofMillis(1500))) {
        if (body(m).equals("fine")) {
          c.ack(m);
          continue;
        }
        attempts++;
        check(m.getDeliveryAttempt() == attempts, "poison delivery " + attempts + " says attempt " + m.getDeliveryAttempt());
        if (attempts == DLQ_MAX_ATTEMPTS) {
          quietUntil = System.currentTimeMillis() + INVISIBLE.toMillis() + 3000;
        }
      }
    }
    check(attempts == DLQ_MAX_ATTEMPTS, "poison delivered " + attempts + " times, want the group's max attempts " + DLQ_MAX_ATTEMPTS);
    String dlq = "%DLQ%" + groupOf(s, "");
    SimpleConsumer r = null;
    Exception last = null;
    // The proxy moves a message to the DLQ only when a receive of its group pops it once more
    // (ReceiveMessageActivity's filter), and the broker creates the DLQ topic then. The expired delivery
    // comes back through the broker's revive service, which can lag seconds behind, so the group keeps
    // receiving until the DLQ exists.
    for (long until = System.currentTimeMillis() + 60000; r == null && System.currentTimeMillis() < until; ) {
      List<MessageView> again = receive(c, 1, INVISIBLE, Duration.ofSeconds(1));
      check(again.isEmpty(), "after the last attempt the group received " + again.size() + " more, want nothing");
      try {
        r = consumer(opened, groupOf(s, "reader"), dlq, "*");
      } catch (ClientException e) {
        last = e;
        Thread.sleep(1000);
      }
    }
    check(r != null, "dead-letter queue " + dlq + ": " + last);
    List<MessageView> got = receive(r, 1, Duration.ofSeconds(10), Duration.ofSeconds(30));
    same(got, "poison");
    // The dead letter keeps the message's id and user properties; where it came from is the broker's
    // (SystemProperties.dead_letter_queue), not a user property.
    check(got.get(0).getMessageId().toString().equals(poisonId) && got.get(0).getProperties().isEmpty(),
        "dead letter " + got.get(0).getMessageId() + " with user properties " + got.get(0).getProperties() + ", want the poison message " + poisonId + " with none");
    r.ack(got.get(0));
  }

  static void tagFilter(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "a||b");
    for (String tag : List.of("a", "b", "c")) {
      send(p, topicOf(s), tag, "tag-" + tag);
    }
    List<MessageView> got = receive(c, 2, Duration.ofSeconds(10), Duration.ofSeconds(15));
    List<MessageView> more = receive(c, 1, Duration.ofSeconds(10), Duration.ofSeconds(2));
    List<MessageView> all = new ArrayList<>(got);
    all.addAll(more);
    same(all, "tag-a", "tag-b");
    ackAll(c, got);
  }

  static void twoGroups(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    List<SimpleConsumer> cs = List.of(consumer(opened, groupOf(s, "a"), topicOf(s), "*"), consumer(opened, groupOf(s, "b"), topicOf(s), "*"));
    send(p, topicOf(s), null, "1", "2", "3");
    for (SimpleConsumer c : cs) {
      List<MessageView> got = receive(c, 3, Duration.ofSeconds(10), Duration.ofSeconds(15));
      same(got, "1", "2", "3");
      ackAll(c, got);
    }
  }

  static void delay(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    long due = System.currentTimeMillis() + 3000;
    p.send(provider.newMessageBuilder().setTopic(topicOf(s)).setBody("later".getBytes(StandardCharsets.UTF_8)).setDeliveryTimestamp(due).build());
    List<MessageView> got = receive(c, 1, Duration.ofSeconds(10), Duration.ofSeconds(15));
    same(got, "later");
    // The real broker's timer wheel ticks once a second (timerPrecisionMs 1000).
    long early = due - System.currentTimeMillis();
    check(early <= 1100, "delivered " + early + " ms before its delivery time");
    c.ack(got.get(0));
  }

  // The real broker reports one attempt for a FIFO batch, the lowest of its messages': a redelivery that
  // also brings a message new to the batch says 1 (local/conformance/goclient.go fifoRedeliveryAttempt
  // has the sources).
  static int fifoRedeliveryAttempt(List<MessageView> batch, List<MessageView> first) {
    List<String> firsts = bodies(first);
    return batch.stream().allMatch(m -> firsts.contains(body(m))) ? 2 : 1;
  }

  static void fifoGroup(String s, List<Closeable> opened) throws Exception {
    Producer p = producer(opened, topicOf(s), null);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    for (String b : List.of("1", "2", "3")) {
      p.send(provider.newMessageBuilder().setTopic(topicOf(s)).setBody(b.getBytes(StandardCharsets.UTF_8)).setMessageGroup("order-1").build());
    }
    // A FIFO group gets a message group's messages in order, and nothing of the group while a delivery
    // is unacknowledged (local/conformance/goclient.go says how the two brokers batch differently).
    List<MessageView> first = receiveSome(c, 3, INVISIBLE, Duration.ofSeconds(15));
    long firstAt = System.currentTimeMillis();
    check(!first.isEmpty() && body(first.get(0)).equals("1"), "first FIFO delivery " + bodies(first) + ", want 1 first");
    // Left unacknowledged: until it comes back, nothing of the group may be delivered.
    List<MessageView> held = new ArrayList<>();
    try {
      held.addAll(c.receive(3, INVISIBLE));
    } catch (ClientException e) {
      if (!notFound(e)) {
        throw e;
      }
    }
    long since = System.currentTimeMillis() - firstAt;
    check(held.isEmpty() || (held.get(0).getDeliveryAttempt() == fifoRedeliveryAttempt(held, first) && since >= INVISIBLE.toMillis() / 2),
        "received " + bodies(held) + " (attempt " + (held.isEmpty() ? 0 : held.get(0).getDeliveryAttempt()) + ") " + since
            + " ms after " + bodies(first) + ", unacknowledged with invisible time " + INVISIBLE);
    // The held receive may have long-polled into the redelivery; those messages come first.
    List<String> order = new ArrayList<>();
    List<MessageView> got = held;
    long deadline = System.currentTimeMillis() + 40000;
    while (order.size() < 3 && System.currentTimeMillis() < deadline) {
      if (got.isEmpty()) {
        got = receiveSome(c, 3, Duration.ofSeconds(10), Duration.ofSeconds(1));
      }
      int want = fifoRedeliveryAttempt(got, first);
      for (MessageView m : got) {
        check(!order.isEmpty() || m.getDeliveryAttempt() == want, "message " + body(m) + " came back with attempt " + m.getDeliveryAttempt()
            + " in " + bodies(got) + " after " + bodies(first) + ", want " + want);
        check(m.getMessageGroup().orElse("").equals("order-1"), "message group " + m.getMessageGroup());
        order.add(body(m));
        c.ack(m);
      }
      got = new ArrayList<>();
    }
    check(String.join(",", order).equals("1,2,3"), "FIFO order after the redelivery " + order + ", want 1,2,3");
  }

  static void transaction(String s, List<Closeable> opened) throws Exception {
    Set<String> checked = ConcurrentHashMap.newKeySet();
    TransactionChecker checker = m -> {
      checked.add(body(m));
      return body(m).equals("unknown-then-commit") ? TransactionResolution.COMMIT : TransactionResolution.ROLLBACK;
    };
    Producer p = producer(opened, topicOf(s), checker);
    SimpleConsumer c = consumer(opened, groupOf(s, ""), topicOf(s), "*");
    Map<String, Integer> ends = Map.of("committed", 1, "rolled-back", 2, "unknown-then-commit", 0, "unknown-then-rollback", 0);
    for (String b : List.of("committed", "rolled-back", "unknown-then-commit", "unknown-then-rollback")) {
      Transaction tx = p.beginTransaction();
      p.send(message(topicOf(s), b, null), tx);
      if (ends.get(b) == 1) {
        tx.commit();
      } else if (ends.get(b) == 2) {
        tx.rollback();
      }
    }
    List<MessageView> got = receive(c, 2, Duration.ofSeconds(20), Duration.ofSeconds(40));
    same(got, "committed", "unknown-then-commit");
    ackAll(c, got);
    // Only the outcome is the contract (goclient.go: the real broker may also check back a
    // transaction its producer already ended).
    check(checked.contains("unknown-then-commit"), "the broker never checked back the open transaction");
  }

  static void unknownTopic(String s, List<Closeable> opened) throws Exception {
    // gRPC clients get no auto-created topics: a producer for a topic nobody created fails to start.
    try {
      producer(opened, "conf-java-never-created", null);
    } catch (ClientException | IllegalStateException e) {
      // The client's start fails (Guava's service: IllegalStateException) with the route error as cause.
      StringBuilder chain = new StringBuilder();
      for (Throwable x = e; x != null; x = x.getCause()) {
        chain.append(x).append(" <- ");
      }
      check(chain.toString().contains("TOPIC_NOT_FOUND") || chain.toString().contains("40402"),
          "start failed with " + chain + " want TOPIC_NOT_FOUND");
      return;
    }
    throw new AssertionError("a producer started on a topic that does not exist");
  }

  // Restart durability runs in two phases around one broker restart shared by every client
  // (local/conformance: RunMatrix): before it, a message is received and acknowledged and three more
  // are sent; after it, the three are delivered and the acknowledged one is not.
  static void restartBefore(String s, List<Closeable> opened) throws Exception {
    String base = "restart-durability";
    Producer p = producer(opened, topicOf(base), null);
    SimpleConsumer c = consumer(opened, groupOf(base, ""), topicOf(base), "*");
    send(p, topicOf(base), null, "acked");
    List<MessageView> got = receive(c, 1, Duration.ofSeconds(30), Duration.ofSeconds(15));
    same(got, "acked");
    c.ack(got.get(0));
    send(p, topicOf(base), null, "kept-1", "kept-2", "kept-3");
  }

  static void restartAfter(String s, List<Closeable> opened) throws Exception {
    String base = "restart-durability";
    SimpleConsumer c = consumer(opened, groupOf(base, ""), topicOf(base), "*");
    List<MessageView> got = receive(c, 3, Duration.ofMinutes(1), Duration.ofSeconds(40));
    ackAll(c, got);
    List<MessageView> more = receive(c, 1, Duration.ofMinutes(1), Duration.ofSeconds(3));
    List<MessageView> all = new ArrayList<>(got);
    all.addAll(more);
    same(all, "kept-1", "kept-2", "kept-3");
  }

  public static void main(String[] args) {
    endpoint = args[0];
    Map<String, Body> run = new java.util.HashMap<>();
    run.put("send-receive-ack", Conformance::sendReceiveAck);
    run.put("redelivery-after-invisible", Conformance::redelivery);
    run.put("change-invisible-duration", Conformance::changeInvisible);
    run.put("max-attempts-dlq", Conformance::maxAttemptsDLQ);
    run.put("tag-filter", Conformance::tagFilter);
    run.put("two-groups", Conformance::twoGroups);
    run.put("delay", Conformance::delay);
    run.put("fifo-group", Conformance::fifoGroup);
    run.put("transaction-check-back", Conformance::transaction);
    run.put("unknown-topic", Conformance::unknownTopic);
    run.put("restart-durability/before", Conformance::restartBefore);
    run.put("restart-durability/after", Conformance::restartAfter);
    for (int i = 1; i < args.length; i++) {
      String s = args[i];
      Body b = run.get(s);
      if (b == null) {
        System.out.println("RESULT " + s + " SKIP not written for the Java client");
        continue;
      }
      List<Closeable> opened = new ArrayList<>();
      String result;
      try {
        b.run(s, opened);
        result = "PASS";
      } catch (Throwable e) {
        String d = String.valueOf(e);
        StackTraceElement[] st = e.getStackTrace();
        if (st.length > 0) {
          d += " at " + st[0];
        }
        result = "FAIL " + d.replace('\n', ' ');
      } finally {
        Collections.reverse(opened);
        for (Closeable x : opened) {
          try {
            x.close();
          } catch (Exception ignored) {
            // closing is best effort
          }
        }
      }
      System.out.println("RESULT " + s + " " + result);
      System.out.flush();
    }
    System.exit(0);
  }
}
