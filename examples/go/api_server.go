// Command api_server is a wsgw API service in Go (grpc-go): it implements wsgw.v1.Exchange with
// the same echo and chat handlers as ws-api, so ws-gateway can use it in place of ws-api:
//
//	examples/go/build.sh                          # -> $BUILD/go-example/bin/api_server
//	$BUILD/go-example/bin/api_server --listen 127.0.0.1:8081 --handler chat
//	bin/ws-gateway --upstream 127.0.0.1:8081
//
// What it shows (examples/README.md explains each point):
//   - one Stream call per (gateway, stream slot); the gateway names itself in x-gateway-id;
//   - the x-wsgw-ack: 1 response header, and Downstream.ack = the Upstream.seq fully handled,
//     sent after the commands that batch produced (at-least-once delivery with replay);
//   - duplicates after a replay dropped by (conn_id, Message.seq);
//   - presence from Open/Close (replicated to every API node), kept per gateway session (its
//     HTTP/2 connection: grpc-go tells when one begins and ends, stats.Handler's TagConn and
//     ConnEnd) and dropped when the connection ends; Open/Close from an older session than an
//     entry's are ignored (a stopped node reading an old connection's buffered events);
//   - presence sync: the session is whole once every stream it announced (x-wsgw-streams) sent
//     a batch with presence_complete;
//   - rooms live on the gateways: Join/Leave commands, and a room Send goes to every gateway,
//     on the sender's own stream for its own gateway (so it follows the sender's earlier Join);
//   - backpressure: a bounded outbound channel per stream; a full one blocks that stream's
//     reader, and HTTP/2 flow control then slows the gateway down.
//
// Built from Debian's packages only (golang-go, golang-google-grpc-dev,
// golang-github-golang-protobuf-1-5-dev, protoc-gen-go, protoc-gen-go-grpc,
// protobuf-compiler), offline, in GOPATH mode: the stubs are generated from proto/wsgw.proto
// into the build directory, never into git (build.sh).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"

	wsgwv1 "wsgw/proto/wsgwv1"
)

// queueMax: Downstream messages queued per stream before its reader stops reading.
const queueMax = 1024

// logf writes one logfmt line on stderr, like the C binaries: msg="event" k=v ...
func logf(event string, kv ...interface{}) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "ts=%.3f msg=%q", float64(time.Now().UnixNano())/1e9, event)
	for i := 0; i+1 < len(kv); i += 2 {
		if s, ok := kv[i+1].(string); ok {
			fmt.Fprintf(&b, " %v=%q", kv[i], s)
		} else {
			fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
		}
	}
	b.WriteByte('\n')
	os.Stderr.Write(b.Bytes())
}

// chatCmd is a chat command: {"op":"join"|"leave","room":R} or {"op":"say","room":R,"text":T}.
type chatCmd struct{ op, room, text string }

// chatParse returns the chat command in payload, or nil for anything else (which is echoed).
// Same rules as ws-api: a JSON object, "op" join|leave|say, a non-empty "room", say needs a
// string "text".
func chatParse(payload []byte, binary bool) *chatCmd {
	if binary || len(payload) == 0 || payload[0] != '{' {
		return nil
	}
	var o map[string]interface{}
	if json.Unmarshal(payload, &o) != nil {
		return nil
	}
	op, _ := o["op"].(string)
	room, ok := o["room"].(string)
	if !ok || room == "" {
		return nil
	}
	switch op {
	case "join", "leave":
		return &chatCmd{op: op, room: room}
	case "say":
		if text, ok := o["text"].(string); ok {
			return &chatCmd{op: op, room: room, text: text}
		}
	}
	return nil
}

// saidJSON is {"op":"said","room":R,"from":U,"text":T}, compact, HTML characters as they are.
func saidJSON(room, from, text string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(struct {
		Op   string `json:"op"`
		Room string `json:"room"`
		From string `json:"from"`
		Text string `json:"text"`
	}{"said", room, from, text})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// session is one gateway session: the HTTP/2 connection its calls share. Serials grow with
// each new connection: newer sessions win.
type session struct {
	serial   uint64
	conns    map[uint64]bool  // conn ids whose latest Open came on this session
	expect   int              // x-wsgw-streams: streams that will say presence_complete
	complete map[*stream]bool // streams that did
}

// entry is one connection in presence: its user and the session its latest Open came on.
type entry struct {
	user string
	sess *session
}

// stream is one Exchange/Stream call: its session, its gateway and its outbound queue. Only the
// call's own goroutine sends on the gRPC stream; everyone else hands Downstreams to out.
type stream struct {
	sess    *session
	gateway string
	out     chan *wsgwv1.Downstream
}

type sessionKey struct{}

// exchange is wsgw.v1.Exchange with an echo, chat or none handler. grpc-go runs every call in
// its own goroutines: the tables below are shared, so mu guards them (never held while
// blocking on a channel).
type exchange struct {
	wsgwv1.UnimplementedExchangeServer
	handler string

	mu       sync.Mutex
	streams  map[string][]*stream // gateway id -> live calls
	presence map[uint64]entry     // conn_id -> user and session
	lastSeq  map[uint64]uint64    // conn_id -> highest Message.seq handled
	serials  uint64
}

func newExchange(handler string) *exchange {
	return &exchange{handler: handler, streams: map[string][]*stream{},
		presence: map[uint64]entry{}, lastSeq: map[uint64]uint64{}}
}

// ---- presence per session: grpc-go's stats.Handler sees every connection begin and end ------

// TagConn gives every new connection its session; the calls on it find it in their context.
func (x *exchange) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	x.mu.Lock()
	x.serials++
	s := &session{serial: x.serials, conns: map[uint64]bool{}, complete: map[*stream]bool{}}
	x.mu.Unlock()
	return context.WithValue(ctx, sessionKey{}, s)
}

// HandleConn: when a connection ends, so does its session, and with it its presence (the
// gateway re-sends Open for its live connections on its next session).
func (x *exchange) HandleConn(ctx context.Context, cs stats.ConnStats) {
	s, ok := ctx.Value(sessionKey{}).(*session)
	if _, end := cs.(*stats.ConnEnd); !end || !ok {
		return
	}
	x.mu.Lock()
	n := len(s.conns)
	for conn := range s.conns {
		delete(x.presence, conn)
		delete(x.lastSeq, conn)
	}
	s.conns = map[uint64]bool{}
	x.mu.Unlock()
	logf("gateway session ended", "session", s.serial, "connections_dropped", n)
}

// TagRPC and HandleRPC: calls need nothing more than their connection's session.
func (x *exchange) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (x *exchange) HandleRPC(context.Context, stats.RPCStats)                       {}

// open and close apply an Open/Close of session s; mu held. An event from an older session
// than the entry's is stale and ignored.
func (x *exchange) open(s *session, conn uint64, user string) {
	had, ok := x.presence[conn]
	if ok && had.sess.serial > s.serial {
		return
	}
	if ok {
		delete(had.sess.conns, conn)
	}
	x.presence[conn] = entry{user: user, sess: s}
	s.conns[conn] = true
}

func (x *exchange) close(s *session, conn uint64) {
	had, ok := x.presence[conn]
	if ok && had.sess.serial > s.serial {
		return
	}
	if ok {
		delete(had.sess.conns, conn)
		delete(x.presence, conn)
	}
	delete(x.lastSeq, conn)
}

// Stream is the gRPC method: one long-lived call per (gateway, stream slot).
func (x *exchange) Stream(call wsgwv1.Exchange_StreamServer) error {
	ctx := call.Context()
	gid := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-gateway-id")) > 0 {
		gid = md.Get("x-gateway-id")[0]
	} else if p, ok := peer.FromContext(ctx); ok {
		gid = p.Addr.String()
	}
	// The promise: this server sends Downstream.ack, so the gateway keeps every batch until
	// acked and replays the rest after a reconnect (at-least-once).
	if err := call.SendHeader(metadata.Pairs("x-wsgw-ack", "1")); err != nil {
		return err
	}
	sess, ok := ctx.Value(sessionKey{}).(*session)
	if !ok { // not served through main's grpc.StatsHandler: one session per call
		sess = x.TagConn(context.Background(), nil).Value(sessionKey{}).(*session)
	}
	st := &stream{sess: sess, gateway: gid, out: make(chan *wsgwv1.Downstream, queueMax)}
	x.mu.Lock()
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-wsgw-streams")) > 0 {
		if n, err := strconv.Atoi(md.Get("x-wsgw-streams")[0]); err == nil && n > 0 {
			sess.expect = n
		}
	}
	x.streams[gid] = append(x.streams[gid], st)
	n := len(x.streams[gid])
	x.mu.Unlock()
	logf("gateway stream opened", "gateway", gid, "streams", n, "session", sess.serial)
	defer x.streamGone(st)

	readErr := make(chan error, 1)
	go func() { readErr <- x.read(call, st) }()
	for {
		select {
		case ds := <-st.out:
			if err := call.Send(ds); err != nil {
				return err
			}
		case err := <-readErr:
			// The reader is done: send what it queued, then end (OK on a half-close).
			for {
				select {
				case ds := <-st.out:
					if e := call.Send(ds); e != nil {
						return e
					}
				default:
					return err
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read handles the call's batches in order: nil when the gateway half-closed.
func (x *exchange) read(call wsgwv1.Exchange_StreamServer, st *stream) error {
	for {
		up, err := call.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			logf("gateway stream broken", "gateway", st.gateway, "error", err.Error())
			return err
		}
		var cmds []*wsgwv1.Command
		for _, ev := range up.Events {
			switch k := ev.Kind.(type) {
			case *wsgwv1.Event_Open:
				x.mu.Lock()
				x.open(st.sess, ev.ConnId, ev.UserId)
				x.mu.Unlock()
			case *wsgwv1.Event_Close:
				x.mu.Lock()
				x.close(st.sess, ev.ConnId)
				x.mu.Unlock()
			case *wsgwv1.Event_Message:
				m := k.Message
				x.mu.Lock()
				dup := m.Seq != 0 && m.Seq <= x.lastSeq[ev.ConnId]
				if !dup {
					x.lastSeq[ev.ConnId] = m.Seq
				}
				x.mu.Unlock()
				if dup {
					continue // a replayed duplicate: handled before
				}
				cmds = x.message(st, ev, m, cmds)
			}
		}
		if up.PresenceComplete {
			x.mu.Lock()
			synced := !st.sess.complete[st] && len(st.sess.complete)+1 == st.sess.expect
			st.sess.complete[st] = true
			n := len(st.sess.conns)
			x.mu.Unlock()
			if synced {
				logf("gateway presence synced", "gateway", st.gateway, "session",
					st.sess.serial, "connections", n)
			}
		}
		// Commands first, then the ack, in one Downstream: the batch is fully handled.
		select {
		case st.out <- &wsgwv1.Downstream{Commands: cmds, Ack: up.Seq}:
		case <-call.Context().Done():
			return call.Context().Err()
		}
	}
}

func nowNs() int64 { return time.Now().UnixNano() }

// message appends the commands one client message produces.
func (x *exchange) message(st *stream, ev *wsgwv1.Event, m *wsgwv1.Message,
	cmds []*wsgwv1.Command) []*wsgwv1.Command {
	if x.handler == "none" {
		return cmds
	}
	var c *chatCmd
	if x.handler == "chat" {
		c = chatParse(m.Payload, m.Binary)
	}
	if c == nil { // echo to the connection, on the stream the message came up on
		return append(cmds, &wsgwv1.Command{Kind: &wsgwv1.Command_Send{Send: &wsgwv1.Send{
			Target:  &wsgwv1.Target{ConnIds: []uint64{ev.ConnId}},
			Payload: m.Payload, Binary: m.Binary, ApiNs: nowNs()}}})
	}
	switch c.op {
	case "join":
		return append(cmds, &wsgwv1.Command{Kind: &wsgwv1.Command_Join{
			Join: &wsgwv1.Join{ConnId: ev.ConnId, Room: c.room}}})
	case "leave":
		return append(cmds, &wsgwv1.Command{Kind: &wsgwv1.Command_Leave{
			Leave: &wsgwv1.Leave{ConnId: ev.ConnId, Room: c.room}}})
	}
	send := &wsgwv1.Command{Kind: &wsgwv1.Command_Send{Send: &wsgwv1.Send{
		Target:  &wsgwv1.Target{Room: c.room},
		Payload: saidJSON(c.room, ev.UserId, c.text), ApiNs: nowNs()}}}
	// Rooms live on the gateways: every gateway gets the Send once. Our own gateway on this
	// stream (after the Join it carried), the others on their first live stream.
	var others []*stream
	x.mu.Lock()
	for gid, ss := range x.streams {
		if gid != st.gateway && len(ss) > 0 {
			others = append(others, ss[0])
		}
	}
	x.mu.Unlock()
	for _, o := range others {
		select {
		case o.out <- &wsgwv1.Downstream{Commands: []*wsgwv1.Command{send}}:
		case <-time.After(10 * time.Second):
			logf("room message dropped", "gateway", o.gateway, "room", c.room,
				"reason", "its stream stayed full for 10 s")
		}
	}
	return append(cmds, send)
}

func (x *exchange) streamGone(st *stream) {
	x.mu.Lock()
	ss := x.streams[st.gateway]
	for i, s := range ss {
		if s == st {
			ss = append(ss[:i], ss[i+1:]...)
			break
		}
	}
	n := len(ss)
	if n == 0 {
		delete(x.streams, st.gateway)
	} else {
		x.streams[st.gateway] = ss
	}
	// Presence stays with the session: the gateway reopens failed streams on the same
	// connection and replays their batches without re-sending presence.
	x.mu.Unlock()
	logf("gateway stream closed", "gateway", st.gateway, "streams", n)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen", envOr("WSAPI_GRPC_LISTEN", "0.0.0.0:8081"),
		"gRPC (h2c) address (env WSAPI_GRPC_LISTEN)")
	handler := flag.String("handler", envOr("WSAPI_HANDLER", "chat"),
		"echo, chat or none (env WSAPI_HANDLER)")
	grace := flag.Float64("grace", 3, "seconds streams may finish on SIGTERM")
	flag.Parse()
	if *handler != "echo" && *handler != "chat" && *handler != "none" {
		fmt.Fprintf(os.Stderr, "api_server: --handler %s: echo, chat or none\n", *handler)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "api_server: cannot listen on %s: %v\n", *listen, err)
		os.Exit(1)
	}
	x := newExchange(*handler)
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20),
		grpc.StatsHandler(x))
	wsgwv1.RegisterExchangeServer(srv, x)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	logf("listening", "addr", ln.Addr().String(), "handler", *handler) // SIGTERM handled from here
	go func() {
		<-sigs
		logf("stopping", "grace_s", strconv.FormatFloat(*grace, 'f', -1, 64))
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Duration(*grace * float64(time.Second))):
			srv.Stop() // streams still open after the grace period: ended
		}
	}()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "api_server: %v\n", err)
		os.Exit(1)
	}
}
