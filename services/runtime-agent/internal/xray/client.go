package xray

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	handlercmd "github.com/xtls/xray-core/app/proxyman/command"
	statscmd "github.com/xtls/xray-core/app/stats/command"
	"github.com/xtls/xray-core/common/protocol"
	"github.com/xtls/xray-core/common/serial"
	"github.com/xtls/xray-core/core"
	xhttp "github.com/xtls/xray-core/proxy/http"
	"github.com/xtls/xray-core/proxy/shadowsocks_2022"
	"github.com/xtls/xray-core/proxy/socks"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Log attribute keys, defined once.
const (
	logKeyTag     = "tag"
	logKeyUser    = "user"
	logKeyUsers   = "users"
	logKeyRemoved = "removed"
	logKeyErr     = "err"
)

// Client drives one running Xray through its gRPC API. It is safe for
// concurrent use.
//
// VLESS and Shadowsocks-2022 users change with AlterInbound. Xray's SOCKS5
// and HTTP inbounds do not implement user management, so for them Client
// reads the inbound's current config (ListInbounds), changes its accounts
// and replaces that one inbound (RemoveInbound + AddInbound). The listener
// of that inbound is closed and reopened within milliseconds; connections in
// flight keep running; other inbounds are untouched and Xray is never
// restarted.
//
// Adding many Shadowsocks-2022 users one by one is slow: Xray rebuilds the
// inbound's whole user table on every add (about 6 ms per add at 10,000
// users, a minute for 10,000 adds). AddUsers with ss2022BatchMin or more
// users therefore replaces the inbound once with all users instead.
//
// Every change is idempotent: adding a user that is there (by id) and
// removing one that is not both succeed. Adding does not compare
// credentials: to change a user's credentials, remove it and add it again.
type Client struct {
	conn     *grpc.ClientConn
	handler  handlercmd.HandlerServiceClient
	stats    statscmd.StatsServiceClient
	sessions sessionpb.SessionServiceClient
	log      *slog.Logger
	limits   Limits

	// replaceMu serialises inbound replacements, which read, change and
	// write a whole inbound and would lose each other's changes (and any
	// AlterInbound made meanwhile) if they interleaved. Replacements hold it
	// exclusively, AlterInbound calls shared.
	replaceMu sync.RWMutex
}

// apiConcurrency bounds the AlterInbound calls one batch makes at once on a
// VLESS inbound: Xray handles them in parallel (10,000 adds take about a
// third of the time with 16 callers as with one), while a Shadowsocks-2022
// inbound rebuilds its whole user table per call and gains nothing.
const apiConcurrency = 8

// concurrently runs fn for 0..n-1, apiConcurrency at a time, and returns
// the first error; calls not yet started are skipped after it. Calls that
// succeeded stay done: every change is idempotent, so the caller retries
// the whole batch.
func concurrently(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(apiConcurrency)
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}

// ss2022BatchMin is the batch size from which AddUsers replaces a
// Shadowsocks-2022 inbound instead of adding users one at a time.
const ss2022BatchMin = 32

// NewClient returns a client for the Xray API at addr (a loopback ip:port,
// as in Spec.APIListen) with DefaultLimits, or the limits given. It does
// not connect: the first call does, so a client can be made before Xray is
// up. Close it when done.
func NewClient(addr string, logger *slog.Logger, limits ...Limits) (*Client, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, errs.Field("api_listen", "must be ip:port")
	}
	lim := DefaultLimits()
	if len(limits) > 0 {
		lim = limits[0].withDefaults()
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(lim.Recv), grpc.MaxCallSendMsgSize(XrayRecvLimit)))
	if err != nil {
		return nil, fmt.Errorf("creating xray api client for %s: %w", addr, err)
	}
	return &Client{
		conn:     conn,
		handler:  handlercmd.NewHandlerServiceClient(conn),
		stats:    statscmd.NewStatsServiceClient(conn),
		sessions: sessionpb.NewSessionServiceClient(conn),
		log:      logger,
		limits:   lim,
	}, nil
}

// Close releases the connection.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("closing xray api client: %w", err)
	}
	return nil
}

// Ping asks Xray for its system stats, the cheapest call that proves the
// API answers. It fails with errs.Unavailable while Xray is not up.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.stats.GetSysStats(ctx, &statscmd.SysStatsRequest{}); err != nil {
		return classify(err, "pinging xray api")
	}
	return nil
}

// AddUser makes u a user of the inbound in, which describes the inbound as
// configured (its tag, protocol and, for Shadowsocks-2022, method; its Users
// are ignored). A user already there by id is success.
//
// u is checked against the inbound first (errs.Invalid): Xray itself does
// not check a Shadowsocks-2022 key when a user is added, and one bad key
// silently stops every later user change on that inbound from applying.
func (c *Client) AddUser(ctx context.Context, in Inbound, u User) error {
	return c.AddUsers(ctx, in, []User{u})
}

// AddUsers is AddUser for several users. On a SOCKS5 or HTTP inbound, and
// on a Shadowsocks-2022 inbound from ss2022BatchMin users on, it replaces
// the inbound once for all of them; on a VLESS inbound it adds up to
// apiConcurrency users at a time. It stops at the first failure; users
// added before it stay added.
func (c *Client) AddUsers(ctx context.Context, in Inbound, users []User) error {
	for _, u := range users {
		if err := in.ValidateUser(u); err != nil {
			return fmt.Errorf("adding user %s to %s: %w", u.ID, in.Tag, err)
		}
	}
	k, ok := kinds[in.Protocol]
	switch {
	case !ok:
	case k.batch:
		if len(users) >= ss2022BatchMin {
			if done, err := c.replaceOrNot(ctx, in, users, nil, fmt.Sprintf("adding %d users to %s", len(users), in.Tag)); done {
				return err
			}
		}
		for _, u := range users {
			if err := c.alterUser(ctx, in, u); err != nil {
				return err
			}
		}
		return nil
	case k.account != nil:
		return concurrently(ctx, len(users), func(ctx context.Context, i int) error { return c.alterUser(ctx, in, users[i]) })
	default:
		err := c.replaceAccounts(ctx, in, func(accounts map[string]string) bool {
			changed := false
			for _, u := range users {
				if _, ok := accounts[u.ID]; !ok {
					accounts[u.ID] = u.Password
					changed = true
				}
			}
			return changed
		})
		if err != nil {
			return fmt.Errorf("adding %d users to %s: %w", len(users), in.Tag, err)
		}
		return nil
	}
	return errs.Field("protocol", "unknown protocol "+string(in.Protocol))
}

func (c *Client) alterUser(ctx context.Context, in Inbound, u User) error {
	account := kinds[in.Protocol].account(in, u)
	op := &handlercmd.AddUserOperation{User: &protocol.User{
		Email:   u.ID,
		Level:   0,
		Account: serial.ToTypedMessage(account),
	}}
	err := c.alter(ctx, in.Tag, op)
	switch {
	case err == nil:
		c.log.DebugContext(ctx, "xray user added", logKeyTag, in.Tag, logKeyUser, u.ID)
		return nil
	case strings.Contains(status.Convert(err).Message(), "User "+u.ID+" already exists"):
		return nil
	}
	return classify(err, fmt.Sprintf("adding user %s to %s", u.ID, in.Tag))
}

// alter runs one AlterInbound operation, never during a replacement.
func (c *Client) alter(ctx context.Context, tag string, op proto.Message) error {
	c.replaceMu.RLock()
	defer c.replaceMu.RUnlock()
	_, err := c.handler.AlterInbound(ctx, &handlercmd.AlterInboundRequest{Tag: tag, Operation: serial.ToTypedMessage(op)})
	return err
}

// RemoveUser removes the user with this id from the inbound in (tag and
// protocol count). A user that is not there is success. New connections
// of the user fail; the ones it has open run on until CutUsers ends them.
// Xray keeps the user's traffic counters.
func (c *Client) RemoveUser(ctx context.Context, in Inbound, id string) error {
	if id == placeholderID {
		return errs.Field("id", "is reserved")
	}
	k, ok := kinds[in.Protocol]
	switch {
	case !ok:
	case k.account != nil:
		op := &handlercmd.RemoveUserOperation{Email: id}
		err := c.alter(ctx, in.Tag, op)
		switch {
		case err == nil:
			c.log.DebugContext(ctx, "xray user removed", logKeyTag, in.Tag, logKeyUser, id)
			return nil
		case strings.Contains(status.Convert(err).Message(), "User "+id+" not found"):
			return nil
		}
		return classify(err, fmt.Sprintf("removing user %s from %s", id, in.Tag))
	default:
		err := c.replaceAccounts(ctx, in, func(accounts map[string]string) bool {
			if _, ok := accounts[id]; !ok {
				return false
			}
			delete(accounts, id)
			return true
		})
		if err != nil {
			return fmt.Errorf("removing user %s from %s: %w", id, in.Tag, err)
		}
		return nil
	}
	return errs.Field("protocol", "unknown protocol "+string(in.Protocol))
}

// RemoveUsers is RemoveUser for several ids. On a SOCKS5 or HTTP inbound,
// and on a Shadowsocks-2022 inbound from ss2022BatchMin ids on, it replaces
// the inbound once for all of them instead of once (or one user table
// rebuild) per id. Otherwise it stops at the first failure; users removed
// before it stay removed.
func (c *Client) RemoveUsers(ctx context.Context, in Inbound, ids []string) error {
	if slices.Contains(ids, placeholderID) {
		return errs.Field("id", "is reserved")
	}
	k, ok := kinds[in.Protocol]
	switch {
	case !ok:
	case k.batch:
		if len(ids) >= ss2022BatchMin {
			gone := make(map[string]bool, len(ids))
			for _, id := range ids {
				gone[strings.ToLower(id)] = true
			}
			if done, err := c.replaceOrNot(ctx, in, nil, gone, fmt.Sprintf("removing %d users from %s", len(ids), in.Tag)); done {
				return err
			}
		}
		for _, id := range ids {
			if err := c.RemoveUser(ctx, in, id); err != nil {
				return err
			}
		}
		return nil
	case k.account != nil:
		return concurrently(ctx, len(ids), func(ctx context.Context, i int) error { return c.RemoveUser(ctx, in, ids[i]) })
	default:
		err := c.replaceAccounts(ctx, in, func(accounts map[string]string) bool {
			changed := false
			for _, id := range ids {
				if _, ok := accounts[id]; ok {
					delete(accounts, id)
					changed = true
				}
			}
			return changed
		})
		if err != nil {
			return fmt.Errorf("removing %d users from %s: %w", len(ids), in.Tag, err)
		}
		return nil
	}
	return errs.Field("protocol", "unknown protocol "+string(in.Protocol))
}

// InboundUsers lists the ids of the users Xray has on the inbound in (tag
// and protocol count), sorted. The agent's drift check compares it with the
// desired users.
func (c *Client) InboundUsers(ctx context.Context, in Inbound) ([]string, error) {
	var ids []string
	k, ok := kinds[in.Protocol]
	switch {
	case !ok:
		return nil, errs.Field("protocol", "unknown protocol "+string(in.Protocol))
	case k.account != nil:
		resp, err := c.inboundUsers(ctx, in.Tag)
		if err != nil {
			return nil, err
		}
		ids = make([]string, 0, len(resp.GetUsers()))
		for _, u := range resp.GetUsers() {
			if u.GetEmail() != placeholderID {
				ids = append(ids, u.GetEmail())
			}
		}
	default:
		cfg, err := c.inboundConfig(ctx, in.Tag)
		if err != nil {
			return nil, fmt.Errorf("listing users of %s: %w", in.Tag, err)
		}
		_, accounts, err := accountsOf(cfg)
		if err != nil {
			return nil, fmt.Errorf("listing users of %s: %w", in.Tag, err)
		}
		for id := range accounts {
			if id != placeholderID {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Traffic is a user's byte counts since Xray started, as Xray counts them:
// uplink is client to server.
type Traffic struct {
	Uplink   int64
	Downlink int64
}

// UserTraffic reads every user's traffic counters WITHOUT resetting them,
// keyed by user id. Counters are cumulative since Xray started, so the
// caller derives usage as deltas: a failed or repeated read never loses or
// double-counts bytes. A user appears from its first connection on and
// stays after removal; a restarted Xray starts again from zero.
func (c *Client) UserTraffic(ctx context.Context) (map[string]Traffic, error) {
	var resp *statscmd.QueryStatsResponse
	err := c.large(ctx, "querying user stats", 0, func(opt grpc.CallOption) (err error) {
		resp, err = c.stats.QueryStats(ctx, &statscmd.QueryStatsRequest{Pattern: "user>>>", Reset_: false}, opt)
		return err
	})
	if err != nil {
		return nil, classify(err, "querying user stats")
	}
	out := make(map[string]Traffic, len(resp.GetStat())/2)
	for _, s := range resp.GetStat() {
		// user>>>ID>>>traffic>>>uplink
		parts := strings.Split(s.GetName(), ">>>")
		if len(parts) != 4 || parts[0] != "user" || parts[2] != "traffic" || parts[1] == placeholderID {
			continue
		}
		t := out[parts[1]]
		switch parts[3] {
		case "uplink":
			t.Uplink = s.GetValue()
		case "downlink":
			t.Downlink = s.GetValue()
		default:
			continue
		}
		out[parts[1]] = t
	}
	return out, nil
}

// replaceAccounts applies change to the accounts of a SOCKS5 or HTTP
// inbound and, if it changed anything, replaces the inbound with the new
// accounts. If the new inbound cannot be added the old one is put back.
func (c *Client) replaceAccounts(ctx context.Context, in Inbound, change func(map[string]string) bool) error {
	c.replaceMu.Lock()
	defer c.replaceMu.Unlock()

	old, err := c.inboundConfig(ctx, in.Tag)
	if err != nil {
		return err
	}
	settings, accounts, err := accountsOf(old)
	if err != nil {
		return err
	}
	wantKind := kinds[in.Protocol].accountKind
	if kind := kindOf(settings); kind != wantKind {
		return errs.New(errs.Conflict, "inbound %s is %s in xray, not %s", in.Tag, kind, wantKind)
	}
	if !change(accounts) {
		return nil
	}
	if len(accounts) == 0 {
		// Never leave an inbound without an account: it would let anyone in.
		pass, err := randomSecret(24)
		if err != nil {
			return err
		}
		accounts[placeholderID] = pass
	}
	current, err := old.GetProxySettings().GetInstance()
	if err != nil {
		return errs.Wrap(errs.Internal, err, "decoding settings of inbound %s", in.Tag)
	}
	if err := c.replaceInbound(ctx, old, current, settings); err != nil {
		return err
	}
	c.log.InfoContext(ctx, "xray inbound replaced with new accounts", logKeyTag, in.Tag, logKeyUsers, len(accounts))
	return nil
}

// replaceOrNot makes a batch change of a Shadowsocks-2022 inbound by
// replacing it (replaceSS2022Users). It reports done with the outcome,
// or not done when the inbound with all its users is over what Xray's API
// accepts in one request: the caller then goes one user at a time.
func (c *Client) replaceOrNot(ctx context.Context, in Inbound, users []User, remove map[string]bool, doing string) (bool, error) {
	err := c.replaceSS2022Users(ctx, in, users, remove)
	switch {
	case err == nil:
		return true, nil
	case errs.CodeOf(err) != errs.CodeMessageTooLarge:
		return true, fmt.Errorf("%s: %w", doing, err)
	}
	c.log.WarnContext(ctx, "xray inbound too large to replace; changing users one at a time", logKeyTag, in.Tag, logKeyErr, err)
	return false, nil
}

// replaceSS2022Users replaces a Shadowsocks-2022 inbound with one that has
// its current users, less those whose lowercased id is in remove, plus
// users, in one step. The placeholder stays whatever is removed.
func (c *Client) replaceSS2022Users(ctx context.Context, in Inbound, users []User, remove map[string]bool) error {
	c.replaceMu.Lock()
	defer c.replaceMu.Unlock()

	old, err := c.inboundConfig(ctx, in.Tag)
	if err != nil {
		return err
	}
	inst, err := old.GetProxySettings().GetInstance()
	if err != nil {
		return errs.Wrap(errs.Internal, err, "decoding settings of inbound %s", in.Tag)
	}
	cfg, ok := inst.(*shadowsocks_2022.MultiUserServerConfig)
	if !ok {
		return errs.New(errs.Conflict, "inbound %s is %s in xray, not multi-user shadowsocks-2022", in.Tag, kindOf(inst))
	}
	// The settings Xray reports are those the inbound started with; the
	// users it has now, with their keys, come from GetInboundUsers.
	resp, err := c.inboundUsers(ctx, in.Tag)
	if err != nil {
		return err
	}
	current := proto.Clone(cfg).(*shadowsocks_2022.MultiUserServerConfig)
	current.Users = nil
	have := map[string]bool{}
	removed := 0
	for _, u := range resp.GetUsers() {
		if u != nil {
			current.Users = append(current.Users, u)
			have[strings.ToLower(u.GetEmail())] = true
		}
	}
	next := proto.Clone(current).(*shadowsocks_2022.MultiUserServerConfig)
	if len(remove) > 0 {
		next.Users = slices.DeleteFunc(next.Users, func(u *protocol.User) bool {
			id := strings.ToLower(u.GetEmail())
			if id == placeholderID || !remove[id] {
				return false
			}
			delete(have, id)
			removed++
			return true
		})
	}
	added := 0
	for _, u := range users {
		if have[strings.ToLower(u.ID)] {
			continue
		}
		have[strings.ToLower(u.ID)] = true
		next.Users = append(next.Users, &protocol.User{
			Email:   u.ID,
			Account: serial.ToTypedMessage(&shadowsocks_2022.Account{Key: u.Key}),
		})
		added++
	}
	if added == 0 && removed == 0 {
		return nil
	}
	if err := c.replaceInbound(ctx, old, current, next); err != nil {
		return err
	}
	c.log.InfoContext(ctx, "xray inbound replaced with new users", logKeyTag, in.Tag, logKeyUsers, added, logKeyRemoved, removed)
	return nil
}

// replaceInbound swaps the running inbound old for one with the same tag and
// receiver (listener) settings and the proxy settings next. If the new one
// cannot be added, the inbound is put back with its current settings. The
// caller holds replaceMu.
func (c *Client) replaceInbound(ctx context.Context, old *core.InboundHandlerConfig, current, next proto.Message) error {
	tag := old.GetTag()
	with := func(settings proto.Message) *core.InboundHandlerConfig {
		return &core.InboundHandlerConfig{
			Tag:              tag,
			ReceiverSettings: old.GetReceiverSettings(),
			ProxySettings:    serial.ToTypedMessage(settings),
		}
	}
	// Xray refuses a request over its receive limit; find out before the
	// inbound is gone.
	if n := proto.Size(&handlercmd.AddInboundRequest{Inbound: with(next)}); n > XrayRecvLimit {
		return tooLarge("replacing inbound "+tag, n)
	}
	if _, err := c.handler.RemoveInbound(ctx, &handlercmd.RemoveInboundRequest{Tag: tag}); err != nil {
		return classify(err, "removing inbound "+tag+" to replace it")
	}
	// From here the inbound is gone: finish even if ctx ends.
	wctx := context.WithoutCancel(ctx)
	if _, err := c.handler.AddInbound(wctx, &handlercmd.AddInboundRequest{Inbound: with(next)}); err != nil {
		if _, rerr := c.handler.AddInbound(wctx, &handlercmd.AddInboundRequest{Inbound: with(current)}); rerr != nil {
			c.log.ErrorContext(ctx, "xray inbound lost: cannot restore it after a failed replacement",
				logKeyTag, tag, logKeyErr, rerr)
			return classify(errors.Join(err, rerr), "replacing inbound "+tag)
		}
		return classify(err, "replacing inbound "+tag)
	}
	return nil
}

// inboundConfig returns the config Xray runs the inbound with.
func (c *Client) inboundConfig(ctx context.Context, tag string) (*core.InboundHandlerConfig, error) {
	var resp *handlercmd.ListInboundsResponse
	err := c.large(ctx, "listing inbounds", 0, func(opt grpc.CallOption) (err error) {
		resp, err = c.handler.ListInbounds(ctx, &handlercmd.ListInboundsRequest{}, opt)
		return err
	})
	if err != nil {
		return nil, classify(err, "listing inbounds")
	}
	for _, in := range resp.GetInbounds() {
		if in.GetTag() == tag {
			return in, nil
		}
	}
	return nil, errs.New(errs.NotFound, "inbound %s not found in xray", tag)
}

// accountsOf decodes a SOCKS5 or HTTP inbound's settings (a private copy)
// and returns them with their accounts map, which aliases the settings.
func accountsOf(cfg *core.InboundHandlerConfig) (proto.Message, map[string]string, error) {
	inst, err := cfg.GetProxySettings().GetInstance()
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "decoding settings of inbound %s", cfg.GetTag())
	}
	switch s := proto.Clone(inst).(type) {
	case *socks.ServerConfig:
		if s.Accounts == nil {
			s.Accounts = map[string]string{}
		}
		return s, s.Accounts, nil
	case *xhttp.ServerConfig:
		if s.Accounts == nil {
			s.Accounts = map[string]string{}
		}
		return s, s.Accounts, nil
	}
	return nil, nil, errs.New(errs.Conflict, "inbound %s is %s in xray, not socks or http", cfg.GetTag(), kindOf(inst))
}

func kindOf(m proto.Message) string {
	switch m.(type) {
	case *socks.ServerConfig:
		return "socks"
	case *xhttp.ServerConfig:
		return "http"
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}

// classify wraps an API error with its class: Xray not answering is
// Unavailable, a missing inbound NotFound, an inbound that cannot manage
// users Conflict, a message over a size limit Invalid with
// errs.CodeMessageTooLarge, anything else Internal.
func classify(err error, doing string) error {
	if errs.CodeOf(err) == errs.CodeMessageTooLarge {
		return err // says what it was doing already
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errs.Wrap(errs.Unavailable, err, "%s", doing)
	}
	st := status.Convert(err)
	switch {
	case st.Code() == codes.Unavailable, st.Code() == codes.DeadlineExceeded, st.Code() == codes.Canceled:
		return errs.Wrap(errs.Unavailable, err, "%s", doing)
	case strings.Contains(st.Message(), "failed to get handler"):
		return errs.Wrap(errs.NotFound, err, "%s: inbound not found", doing)
	case st.Code() == codes.ResourceExhausted:
		// A request over Xray's receive limit (the Client keeps its own
		// under it, so this is a bug) or a reply over ours.
		return errs.WithCode(errs.Wrap(errs.Invalid, err, "%s: message over the size limit", doing), errs.CodeMessageTooLarge)
	case strings.Contains(st.Message(), "not a UserManager"):
		return errs.Wrap(errs.Conflict, err, "%s: inbound cannot manage users", doing)
	}
	return errs.Wrap(errs.Internal, err, "%s", doing)
}
