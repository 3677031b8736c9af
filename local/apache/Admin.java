// Creates topics and subscription groups on a private Apache RocketMQ broker in one JVM, where
// MQAdminStartup would start one JVM (about two seconds) per topic and per group. Run as a
// single-file source program: java -cp '<lib>/*' Admin.java <broker-addr> <spec>...
//
//   topic:NAME:TYPE            TYPE is NORMAL, FIFO, DELAY or TRANSACTION. gRPC clients get no
//                              auto-created topics (the proxy answers TOPIC_NOT_FOUND), and the proxy
//                              checks a message against its topic's message.type attribute.
//   group:NAME:RETRIES:ORDERLY group config: retryMaxTimes (delivery attempts = RETRIES + 1, see
//                              proxy GrpcClientSettingsManager), consumeMessageOrderly (FIFO groups),
//                              and a one-second customized retry policy so that retries stay short.
import java.util.HashMap;
import java.util.Map;

import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.common.attribute.TopicMessageType;
import org.apache.rocketmq.remoting.protocol.subscription.CustomizedRetryPolicy;
import org.apache.rocketmq.remoting.protocol.subscription.GroupRetryPolicy;
import org.apache.rocketmq.remoting.protocol.subscription.GroupRetryPolicyType;
import org.apache.rocketmq.remoting.protocol.subscription.SubscriptionGroupConfig;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;

public class Admin {
    public static void main(String[] args) throws Exception {
        String broker = args[0];
        DefaultMQAdminExt admin = new DefaultMQAdminExt(5000);
        admin.setInstanceName("local-admin-" + System.nanoTime());
        admin.setNamesrvAddr(args[1]);
        admin.start();
        try {
            for (int i = 2; i < args.length; i++) {
                String[] f = args[i].split(":");
                if (f[0].equals("topic")) {
                    TopicConfig tc = new TopicConfig(f[1], 1, 1);
                    Map<String, String> attrs = new HashMap<>();
                    attrs.put("+message.type", TopicMessageType.valueOf(f[2]).getValue());
                    tc.setAttributes(attrs);
                    admin.createAndUpdateTopicConfig(broker, tc);
                } else if (f[0].equals("group")) {
                    SubscriptionGroupConfig g = new SubscriptionGroupConfig();
                    g.setGroupName(f[1]);
                    g.setRetryMaxTimes(Integer.parseInt(f[2]));
                    g.setConsumeMessageOrderly(Boolean.parseBoolean(f[3]));
                    GroupRetryPolicy p = new GroupRetryPolicy();
                    p.setType(GroupRetryPolicyType.CUSTOMIZED);
                    p.setCustomizedRetryPolicy(new CustomizedRetryPolicy(new long[] {1000}));
                    g.setGroupRetryPolicy(p);
                    admin.createAndUpdateSubscriptionGroupConfig(broker, g);
                } else {
                    throw new IllegalArgumentException("unknown spec " + args[i]);
                }
            }
        } finally {
            admin.shutdown();
        }
    }
}
