package rocketmq

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"net"
	"strings"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server serves a Broker over gRPC on one port, in plaintext and in TLS alike: the official Go client
// (v5.1.2) always dials with TLS (rpc_client.go builds credentials.NewTLS with InsecureSkipVerify), other
// clients may speak plaintext, and a real proxy's endpoint takes both (proxy's gRPC server sniffs
// the TLS handshake: ProxyAndTlsProtocolNegotiator).
type Server struct {
	broker *Broker
	grpc   *grpc.Server
	ln     net.Listener
	addr   string
	done   chan struct{}
}

// Listen starts serving b on addr ("127.0.0.1:0" picks a free port).
func Listen(b *Broker, addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	cert, err := selfSignedCert()
	if err != nil {
		ln.Close()
		return nil, err
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	s := &Server{
		broker: b,
		grpc:   grpc.NewServer(grpc.MaxRecvMsgSize(2*MaxBodySize), grpc.MaxSendMsgSize(64*MaxBodySize)),
		ln:     ln, addr: ln.Addr().String(), done: make(chan struct{}),
	}
	v2.RegisterMessagingServiceServer(s.grpc, &service{b: b})
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(&sniffListener{Listener: ln, tls: tlsCfg})
	}()
	return s, nil
}

// Addr is the endpoint clients use.
func (s *Server) Addr() string { return s.addr }

// Close stops serving at once: open streams are cut, as a killed broker would cut them.
func (s *Server) Close() {
	s.grpc.Stop()
	<-s.done
}

type service struct {
	v2.UnimplementedMessagingServiceServer
	b *Broker
}

func ok() *v2.Status { return &v2.Status{Code: v2.Code_OK, Message: "OK"} }

func statusOf(err error) *v2.Status {
	code, msg := codeOf(err)
	return &v2.Status{Code: code, Message: msg}
}

func clientID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-mq-client-id"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *service) QueryRoute(ctx context.Context, req *v2.QueryRouteRequest) (*v2.QueryRouteResponse, error) {
	t, err := s.b.Route(req.GetTopic().GetName())
	if err != nil {
		return &v2.QueryRouteResponse{Status: statusOf(err)}, nil
	}
	// The route points back at the endpoints the client asked through, so a client behind a proxy
	// (Toxiproxy in the local stack) keeps using it, as with a real proxy's cluster mode.
	ep := req.GetEndpoints()
	if ep == nil || len(ep.GetAddresses()) == 0 {
		return &v2.QueryRouteResponse{Status: &v2.Status{Code: v2.Code_ILLEGAL_ACCESS_POINT, Message: "endpoints are required"}}, nil
	}
	return &v2.QueryRouteResponse{Status: ok(), MessageQueues: []*v2.MessageQueue{s.queue(t, ep)}}, nil
}

func (s *service) queue(t *topicState, ep *v2.Endpoints) *v2.MessageQueue {
	return &v2.MessageQueue{
		Topic:              &v2.Resource{Name: t.name},
		Id:                 0,
		Permission:         v2.Permission_READ_WRITE,
		Broker:             &v2.Broker{Name: "rocketmq-local", Id: 0, Endpoints: ep},
		AcceptMessageTypes: t.acceptTypes(),
	}
}

func (s *service) Heartbeat(ctx context.Context, req *v2.HeartbeatRequest) (*v2.HeartbeatResponse, error) {
	return &v2.HeartbeatResponse{Status: ok()}, nil
}

// reservedProperties are the property names the broker keeps for itself; the proxy refuses a message
// that sets one as a user property (proxy grpc/v2/producer/SendMessageActivity.java
// validateUserProperties, common message/MessageConst.java STRING_HASH_SET).
var reservedProperties = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`TRACE_ON MSG_REGION KEYS TAGS WAIT DELAY RETRY_TOPIC REAL_TOPIC REAL_QID
		TRAN_MSG PGROUP MIN_OFFSET MAX_OFFSET BUYER_ID ORIGIN_MESSAGE_ID TRANSFER_FLAG CORRECTION_FLAG
		RECONSUME_TIME UNIQ_KEY MAX_RECONSUME_TIMES CONSUME_START_TIME POP_CK POP_CK_OFFSET 1ST_POP_TIME
		TRAN_PREPARED_QUEUE_OFFSET DUP_INFO EXTEND_UNIQ_INFO INSTANCE_ID CORRELATION_ID REPLY_TO_CLIENT TTL
		ARRIVE_TIME PUSH_REPLY_TIME CLUSTER MSG_TYPE INNER_MULTI_QUEUE_OFFSET TIMER_DELAY_MS TIMER_DELAY_SEC
		TIMER_DELIVER_MS TIMER_ENQUEUE_MS TIMER_DEQUEUE_MS TIMER_ROLL_TIMES TIMER_OUT_MS TIMER_DEL_UNIQKEY
		TIMER_DELAY_LEVEL __BORNHOST BORN_TIMESTAMP DLQ_ORIGIN_TOPIC DLQ_ORIGIN_MESSAGE_ID`) {
		m[k] = true
	}
	return m
}()

func (s *service) SendMessage(ctx context.Context, req *v2.SendMessageRequest) (*v2.SendMessageResponse, error) {
	if len(req.GetMessages()) == 0 {
		return &v2.SendMessageResponse{Status: &v2.Status{Code: v2.Code_BAD_REQUEST, Message: "no messages"}}, nil
	}
	ins := make([]SendInput, 0, len(req.GetMessages()))
	for _, m := range req.GetMessages() {
		sp := m.GetSystemProperties()
		if sp == nil || m.GetTopic() == nil {
			return &v2.SendMessageResponse{Status: &v2.Status{Code: v2.Code_BAD_REQUEST, Message: "message without topic or system properties"}}, nil
		}
		for k := range m.GetUserProperties() {
			if reservedProperties[k] {
				return &v2.SendMessageResponse{Status: &v2.Status{Code: v2.Code_ILLEGAL_MESSAGE_PROPERTY_KEY, Message: "property is used by system: " + k}}, nil
			}
		}
		in := SendInput{
			ID: sp.GetMessageId(), Topic: m.GetTopic().GetName(), Tag: sp.GetTag(), Keys: sp.GetKeys(),
			Group: sp.GetMessageGroup(), Props: m.GetUserProperties(), Body: m.GetBody(), Type: sp.GetMessageType(),
			BornHost: sp.GetBornHost(),
		}
		if sp.GetBornTimestamp() != nil {
			in.BornAt = sp.GetBornTimestamp().AsTime()
		}
		if sp.GetDeliveryTimestamp() != nil {
			in.DeliverAt = sp.GetDeliveryTimestamp().AsTime()
		}
		ins = append(ins, in)
	}
	res, err := s.b.Send(ins)
	if err != nil {
		st := statusOf(err)
		entries := make([]*v2.SendResultEntry, len(ins))
		for i, in := range ins {
			entries[i] = &v2.SendResultEntry{Status: st, MessageId: in.ID}
		}
		return &v2.SendMessageResponse{Status: st, Entries: entries}, nil
	}
	entries := make([]*v2.SendResultEntry, len(res))
	for i, r := range res {
		entries[i] = &v2.SendResultEntry{Status: ok(), MessageId: r.ID, TransactionId: r.TxID, Offset: r.Offset}
	}
	return &v2.SendMessageResponse{Status: ok(), Entries: entries}, nil
}

func (s *service) QueryAssignment(ctx context.Context, req *v2.QueryAssignmentRequest) (*v2.QueryAssignmentResponse, error) {
	if !s.b.validGroup(req.GetGroup().GetName()) {
		return &v2.QueryAssignmentResponse{Status: &v2.Status{Code: v2.Code_ILLEGAL_CONSUMER_GROUP, Message: "illegal consumer group"}}, nil
	}
	t, err := s.b.Route(req.GetTopic().GetName())
	if err != nil {
		return &v2.QueryAssignmentResponse{Status: statusOf(err)}, nil
	}
	ep := req.GetEndpoints()
	if ep == nil || len(ep.GetAddresses()) == 0 {
		return &v2.QueryAssignmentResponse{Status: &v2.Status{Code: v2.Code_ILLEGAL_ACCESS_POINT, Message: "endpoints are required"}}, nil
	}
	return &v2.QueryAssignmentResponse{Status: ok(), Assignments: []*v2.Assignment{{MessageQueue: s.queue(t, ep)}}}, nil
}

func (s *service) ReceiveMessage(req *v2.ReceiveMessageRequest, stream v2.MessagingService_ReceiveMessageServer) error {
	ctx := stream.Context()
	send := func(st *v2.Status) error {
		return stream.Send(&v2.ReceiveMessageResponse{Content: &v2.ReceiveMessageResponse_Status{Status: st}})
	}
	if req.GetMessageQueue() == nil || req.GetGroup() == nil {
		return send(&v2.Status{Code: v2.Code_BAD_REQUEST, Message: "group and message queue are required"})
	}
	group := req.GetGroup().GetName()
	wait, err := s.b.pollingTime(ctx, clientID(ctx), req.GetLongPollingTimeout())
	if err != nil {
		return send(statusOf(err))
	}
	invisible := req.GetInvisibleDuration().AsDuration()
	if req.GetInvisibleDuration() == nil {
		invisible = DefaultInvisible
	}
	got, err := s.b.Receive(ReceiveInput{
		Group: group, Topic: req.GetMessageQueue().GetTopic().GetName(), Filter: req.GetFilterExpression().GetExpression(),
		SQLFilter: req.GetFilterExpression().GetType() == v2.FilterType_SQL,
		Batch:     int(req.GetBatchSize()), Invisible: invisible, Wait: wait,
	}, ctx.Done())
	if err != nil {
		return send(statusOf(err))
	}
	if len(got) == 0 {
		// The proxy answers MESSAGE_NOT_FOUND when long polling ends empty.
		return send(&v2.Status{Code: v2.Code_MESSAGE_NOT_FOUND, Message: "no new message"})
	}
	// What never reached the client is nacked, as the proxy does for messages its response stream
	// could not write.
	if err := send(ok()); err != nil {
		s.b.giveBack(group, got)
		return err
	}
	if err := stream.Send(&v2.ReceiveMessageResponse{Content: &v2.ReceiveMessageResponse_DeliveryTimestamp{DeliveryTimestamp: timestamppb.Now()}}); err != nil {
		s.b.giveBack(group, got)
		return err
	}
	for i, d := range got {
		if err := stream.Send(&v2.ReceiveMessageResponse{Content: &v2.ReceiveMessageResponse_Message{Message: toProto(d.Msg, &d)}}); err != nil {
			s.b.giveBack(group, got[i:])
			return err
		}
	}
	return nil
}

func toProto(m *storedMessage, d *Delivered) *v2.Message {
	tag := m.Tag
	sp := &v2.SystemProperties{
		Keys: m.Keys, MessageId: m.ID, MessageType: m.Type, BornHost: m.BornHost,
		BornTimestamp: timestamppb.New(m.BornAt), StoreTimestamp: timestamppb.New(m.StoredAt), StoreHost: "rocketmq-local",
		BodyEncoding: v2.Encoding_IDENTITY, QueueId: 0,
	}
	if m.Tag != "" {
		sp.Tag = &tag
	}
	// The proxy always sends the body's MD5 in upper-case hex, whatever digest the producer sent
	// (proxy grpc/v2/common/GrpcConverter.java buildSystemProperties, common utils/BinaryUtil.java
	// generateMd5); the Node.js client reads it unconditionally (MessageView: getBodyDigest().toObject()).
	sum := md5.Sum(m.Body)
	sp.BodyDigest = &v2.Digest{Type: v2.DigestType_MD5, Checksum: strings.ToUpper(hex.EncodeToString(sum[:]))}
	if m.Group != "" {
		g := m.Group
		sp.MessageGroup = &g
	}
	if !m.DeliverAt.IsZero() {
		sp.DeliveryTimestamp = timestamppb.New(m.DeliverAt)
	}
	off := m.Offset
	sp.QueueOffset = &off
	if d != nil {
		h, a := d.ReceiptHandle, d.Attempt
		sp.ReceiptHandle, sp.DeliveryAttempt = &h, &a
		sp.InvisibleDuration = durationpb.New(d.Invisible)
	}
	props := m.Props
	if topic, id := m.Props[PropertyDLQOriginTopic], m.Props[PropertyDLQOriginMessageID]; topic != "" || id != "" {
		// A dead letter's origin is the broker's: the proxy leaves MessageConst's reserved keys out of
		// the user properties and names the origin in dead_letter_queue when both are there
		// (GrpcConverter.java buildUserAttributes, buildSystemProperties).
		props = make(map[string]string, len(m.Props))
		for k, v := range m.Props {
			if k != PropertyDLQOriginTopic && k != PropertyDLQOriginMessageID {
				props[k] = v
			}
		}
		if topic != "" && id != "" {
			sp.DeadLetterQueue = &v2.DeadLetterQueue{Topic: topic, MessageId: id}
		}
	}
	return &v2.Message{Topic: &v2.Resource{Name: m.Topic}, UserProperties: props, SystemProperties: sp, Body: m.Body}
}

func (s *service) AckMessage(ctx context.Context, req *v2.AckMessageRequest) (*v2.AckMessageResponse, error) {
	if len(req.GetEntries()) == 0 {
		return &v2.AckMessageResponse{Status: &v2.Status{Code: v2.Code_BAD_REQUEST, Message: "no entries"}}, nil
	}
	overall := ok()
	entries := make([]*v2.AckMessageResultEntry, 0, len(req.GetEntries()))
	for _, e := range req.GetEntries() {
		st := ok()
		if err := s.b.Ack(req.GetGroup().GetName(), req.GetTopic().GetName(), e.GetMessageId(), e.GetReceiptHandle()); err != nil {
			st = statusOf(err)
			if len(req.GetEntries()) == 1 {
				overall = st
			} else {
				overall = &v2.Status{Code: v2.Code_MULTIPLE_RESULTS, Message: "some entries failed"}
			}
		}
		entries = append(entries, &v2.AckMessageResultEntry{MessageId: e.GetMessageId(), ReceiptHandle: e.GetReceiptHandle(), Status: st})
	}
	return &v2.AckMessageResponse{Status: overall, Entries: entries}, nil
}

func (s *service) ChangeInvisibleDuration(ctx context.Context, req *v2.ChangeInvisibleDurationRequest) (*v2.ChangeInvisibleDurationResponse, error) {
	if req.GetInvisibleDuration() == nil {
		return &v2.ChangeInvisibleDurationResponse{Status: &v2.Status{Code: v2.Code_ILLEGAL_INVISIBLE_TIME, Message: "invisible duration is required"}}, nil
	}
	h, err := s.b.ChangeInvisible(req.GetGroup().GetName(), req.GetTopic().GetName(), req.GetMessageId(), req.GetReceiptHandle(), req.GetInvisibleDuration().AsDuration())
	if err != nil {
		return &v2.ChangeInvisibleDurationResponse{Status: statusOf(err)}, nil
	}
	return &v2.ChangeInvisibleDurationResponse{Status: ok(), ReceiptHandle: h}, nil
}

func (s *service) ForwardMessageToDeadLetterQueue(ctx context.Context, req *v2.ForwardMessageToDeadLetterQueueRequest) (*v2.ForwardMessageToDeadLetterQueueResponse, error) {
	if err := s.b.ForwardToDLQ(req.GetGroup().GetName(), req.GetTopic().GetName(), req.GetMessageId(), req.GetReceiptHandle()); err != nil {
		return &v2.ForwardMessageToDeadLetterQueueResponse{Status: statusOf(err)}, nil
	}
	return &v2.ForwardMessageToDeadLetterQueueResponse{Status: ok()}, nil
}

func (s *service) EndTransaction(ctx context.Context, req *v2.EndTransactionRequest) (*v2.EndTransactionResponse, error) {
	if err := s.b.EndTransaction(req.GetTopic().GetName(), req.GetMessageId(), req.GetTransactionId(), req.GetResolution()); err != nil {
		return &v2.EndTransactionResponse{Status: statusOf(err)}, nil
	}
	return &v2.EndTransactionResponse{Status: ok()}, nil
}

func (s *service) NotifyClientTermination(ctx context.Context, req *v2.NotifyClientTerminationRequest) (*v2.NotifyClientTerminationResponse, error) {
	s.b.dropClient(clientID(ctx), nil)
	return &v2.NotifyClientTerminationResponse{Status: ok()}, nil
}

// ParseMessageType reads NORMAL, FIFO, DELAY, TRANSACTION or MIXED (any).
func ParseMessageType(s string) (v2.MessageType, bool) {
	switch strings.ToUpper(s) {
	case "", "MIXED":
		return v2.MessageType_MESSAGE_TYPE_UNSPECIFIED, true
	case "NORMAL":
		return v2.MessageType_NORMAL, true
	case "FIFO":
		return v2.MessageType_FIFO, true
	case "DELAY":
		return v2.MessageType_DELAY, true
	case "TRANSACTION":
		return v2.MessageType_TRANSACTION, true
	}
	return 0, false
}
