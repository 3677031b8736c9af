// Package mqtest is a RocketMQ publisher for tests of the services that publish: it records every
// attempt, can be told to fail, and can hand what it publishes on as the queue would.
package mqtest

import (
	"context"
	"sync"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
)

// Publisher records change events and grants. OnChange and OnGrant, when set, receive each one that
// was published (e.g. cachesync's Syncer.Apply, or a ledger write), and their error is the publish's.
type Publisher struct {
	mu       sync.Mutex
	changes  []mq.ChangeEvent
	grants   []domain.Claim
	starts   []GrantStart
	wakes    int
	fail     error
	OnChange func(context.Context, mq.ChangeEvent) error
	OnGrant  func(context.Context, domain.Claim) error
}

// Fail makes every later publish fail with err (nil: succeed again).
func (p *Publisher) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

// PublishChange records ev, then fails or delivers it.
func (p *Publisher) PublishChange(ctx context.Context, ev mq.ChangeEvent) error {
	p.mu.Lock()
	p.changes = append(p.changes, ev)
	fail, deliver := p.fail, p.OnChange
	p.mu.Unlock()
	if fail != nil || deliver == nil {
		return fail
	}
	return deliver(ctx, ev)
}

// PublishGrant records c, then fails or delivers it.
func (p *Publisher) PublishGrant(ctx context.Context, c domain.Claim) error {
	p.mu.Lock()
	p.grants = append(p.grants, c)
	fail, deliver := p.fail, p.OnGrant
	p.mu.Unlock()
	if fail != nil || deliver == nil {
		return fail
	}
	return deliver(ctx, c)
}

// GrantStart is one grant-start publish: the message and when it was to be delivered.
type GrantStart struct {
	mq.GrantStart
	DeliverAt time.Time
}

// PublishGrantStart records g and its delivery time, then fails or succeeds.
func (p *Publisher) PublishGrantStart(ctx context.Context, g mq.GrantStart, deliverAt time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts = append(p.starts, GrantStart{g, deliverAt})
	return p.fail
}

// PublishRebuildWake counts the wake, then fails or succeeds.
func (p *Publisher) PublishRebuildWake(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wakes++
	return p.fail
}

// RebuildWakes counts the cache-rebuild wakes attempted, failed ones included.
func (p *Publisher) RebuildWakes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wakes
}

// GrantStarts lists every grant-start publish attempted, failed ones included.
func (p *Publisher) GrantStarts() []GrantStart {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]GrantStart(nil), p.starts...)
}

// Changes lists every change publish attempted, failed ones included.
func (p *Publisher) Changes() []mq.ChangeEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]mq.ChangeEvent(nil), p.changes...)
}

// Grants lists every grant publish attempted, failed ones included.
func (p *Publisher) Grants() []domain.Claim {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]domain.Claim(nil), p.grants...)
}

// Forget drops what was recorded so far.
func (p *Publisher) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changes, p.grants, p.starts, p.wakes = nil, nil, nil, 0
}
