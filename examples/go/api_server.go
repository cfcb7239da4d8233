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
//   - presence from Open/Close (replicated to every API node), dropped with a gateway's last
//     stream;
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

// stream is one Exchange/Stream call: its gateway and its outbound queue. Only the call's own
// goroutine sends on the gRPC stream; everyone else hands Downstreams to out.
type stream struct {
	gateway string
	out     chan *wsgwv1.Downstream
}

// exchange is wsgw.v1.Exchange with an echo, chat or none handler. grpc-go runs every call in
// its own goroutines: the tables below are shared, so mu guards them (never held while
// blocking on a channel).
type exchange struct {
	wsgwv1.UnimplementedExchangeServer
	handler string

	mu       sync.Mutex
	streams  map[string][]*stream         // gateway id -> live calls
	presence map[string]map[uint64]string // gateway id -> conn_id -> user_id
	lastSeq  map[uint64]uint64            // conn_id -> highest Message.seq handled
}

func newExchange(handler string) *exchange {
	return &exchange{handler: handler, streams: map[string][]*stream{},
		presence: map[string]map[uint64]string{}, lastSeq: map[uint64]uint64{}}
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
	st := &stream{gateway: gid, out: make(chan *wsgwv1.Downstream, queueMax)}
	x.mu.Lock()
	x.streams[gid] = append(x.streams[gid], st)
	n := len(x.streams[gid])
	x.mu.Unlock()
	logf("gateway stream opened", "gateway", gid, "streams", n)
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
				if x.presence[st.gateway] == nil {
					x.presence[st.gateway] = map[uint64]string{}
				}
				x.presence[st.gateway][ev.ConnId] = ev.UserId
				x.mu.Unlock()
			case *wsgwv1.Event_Close:
				x.mu.Lock()
				delete(x.presence[st.gateway], ev.ConnId)
				delete(x.lastSeq, ev.ConnId)
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
		// The gateway re-sends Open for its live connections when it comes back.
		delete(x.streams, st.gateway)
		for conn := range x.presence[st.gateway] {
			delete(x.lastSeq, conn)
		}
		delete(x.presence, st.gateway)
	} else {
		x.streams[st.gateway] = ss
	}
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
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	wsgwv1.RegisterExchangeServer(srv, newExchange(*handler))
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
