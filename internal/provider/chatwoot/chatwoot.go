// Package chatwoot reads Chatwoot webhooks (account webhooks and agent
// bots): one event per request. message_created with message_type
// incoming becomes a message — never an agent's or a bot's own message
// (outgoing, template, private notes), which would make a bot answer
// itself. conversation_status_changed to open pauses the conversation (a
// human took it over), back to pending resumes it; every other event is
// counted and ignored.
//
// Conversation key: "<account.id>:<conversation.id>".
package chatwoot

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "chatwoot"

// Events lull acts on.
const (
	EventMessageCreated = "message_created"
	EventStatusChanged  = "conversation_status_changed"
)

// Conversation statuses that pause and resume the bot.
const (
	StatusOpen    = "open"    // a human agent has it: pause
	StatusPending = "pending" // back to the bot: resume
)

type ref struct {
	ID        provider.Str `json:"id"`
	DisplayID provider.Str `json:"display_id"`
	Name      string       `json:"name"`
	Status    string       `json:"status"`
	InboxID   provider.Str `json:"inbox_id"`
	AccountID provider.Str `json:"account_id"`
}

type event struct {
	Event string `json:"event"`

	// message_created
	ID                provider.Str    `json:"id"`
	Content           string          `json:"content"`
	MessageType       provider.Str    `json:"message_type"`
	ContentType       string          `json:"content_type"`
	ContentAttributes json.RawMessage `json:"content_attributes"`
	SourceID          provider.Str    `json:"source_id"`
	CreatedAt         json.RawMessage `json:"created_at"`
	Private           bool            `json:"private"`
	Sender            *struct {
		ID          provider.Str `json:"id"`
		Name        string       `json:"name"`
		Type        string       `json:"type"`
		PhoneNumber string       `json:"phone_number"`
		Email       string       `json:"email"`
		Identifier  string       `json:"identifier"`
	} `json:"sender"`
	Conversation *ref         `json:"conversation"`
	Account      *ref         `json:"account"`
	Inbox        *ref         `json:"inbox"`
	Attachments  []attachment `json:"attachments"`

	// conversation_status_changed: the conversation is the payload
	Status    string       `json:"status"`
	AccountID provider.Str `json:"account_id"`
	InboxID   provider.Str `json:"inbox_id"`
}

type attachment struct {
	ID            provider.Str `json:"id"`
	FileType      string       `json:"file_type"`
	DataURL       string       `json:"data_url"`
	ThumbURL      string       `json:"thumb_url"`
	Extension     string       `json:"extension"`
	FileSize      provider.Num `json:"file_size"`
	CoordLat      provider.Num `json:"coordinates_lat"`
	CoordLong     provider.Num `json:"coordinates_long"`
	FallbackTitle string       `json:"fallback_title"`
}

// Parse reads a webhook body. receivedAt is the time of receipt.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var e event
	if err := provider.Decode(body, &e); err != nil {
		return res, fmt.Errorf("chatwoot event: %w", err)
	}
	var err error
	switch e.Event {
	case EventMessageCreated:
		err = messageCreated(&res, &e, receivedAt)
	case EventStatusChanged:
		err = statusChanged(&res, &e, receivedAt)
	case "":
		return res, &ingest.FieldError{Field: "event", Problem: "is required"}
	default:
		res.Ignore("event:" + provider.Truncate(e.Event, 64))
	}
	if err != nil {
		return provider.Result{}, fmt.Errorf("chatwoot %s: %w", e.Event, err)
	}
	return res, nil
}

// incoming: Chatwoot writes message_type as a name, or (in some payloads)
// as its enum value, 0.
func incoming(t string) bool { return t == "incoming" || t == "0" }

func messageCreated(res *provider.Result, e *event, receivedAt time.Time) error {
	switch {
	case !incoming(e.MessageType.String()):
		res.Ignore("message_type:" + provider.Truncate(e.MessageType.String(), 32))
		return nil
	case e.Private:
		res.Ignore("private")
		return nil
	case e.Sender != nil && (e.Sender.Type == "user" || e.Sender.Type == "agent_bot"):
		res.Ignore("sender:" + e.Sender.Type)
		return nil
	}
	id, err := provider.ID("id", e.ID.String())
	if err != nil {
		return err
	}
	key, err := e.key()
	if err != nil {
		return err
	}
	ts, err := provider.Timestamp("created_at", e.CreatedAt)
	if err != nil {
		return err
	}
	msg := batch.Message{
		ID:         id,
		Text:       e.Content,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
	}
	meta := provider.Meta{}
	if e.Sender != nil {
		msg.From = e.Sender.ID.String()
		meta.Str("sender_name", e.Sender.Name)
		meta.Str("sender_type", e.Sender.Type)
		meta.Str("phone_number", e.Sender.PhoneNumber)
		meta.Str("email", e.Sender.Email)
		meta.Str("identifier", e.Sender.Identifier)
	}
	if e.Inbox != nil {
		msg.To = e.Inbox.ID.String()
		meta.Str("inbox_name", e.Inbox.Name)
	}
	if e.Conversation != nil {
		meta.Str("display_id", e.Conversation.DisplayID.String())
		meta.Str("conversation_status", e.Conversation.Status)
	}
	meta.Str("source_id", e.SourceID.String())
	meta.Str("content_type", e.ContentType)
	content(e, &msg, meta)
	msg.Metadata = meta.JSON()
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Message: msg})
	return nil
}

// statusChanged pauses a conversation opened by a human, and resumes one
// handed back (pending); resolved and snoozed change nothing.
func statusChanged(res *provider.Result, e *event, receivedAt time.Time) error {
	status := e.Status
	if e.Conversation != nil && e.Conversation.Status != "" {
		status = e.Conversation.Status
	}
	var kind string
	switch strings.ToLower(status) {
	case StatusOpen:
		kind = ingest.KindPause
	case StatusPending:
		kind = ingest.KindResume
	default:
		res.Ignore("status:" + provider.Truncate(status, 32))
		return nil
	}
	key, err := e.key()
	if err != nil {
		return err
	}
	meta := provider.Meta{}
	meta.Str("status", strings.ToLower(status))
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Kind: kind, Message: batch.Message{
		ReceivedAt: batch.FormatTime(receivedAt),
		Source:     Source,
		Metadata:   meta.JSON(),
	}})
	return nil
}

// key is "<account id>:<conversation id>": from account and conversation
// of a message event, from the payload itself (the conversation) of a
// conversation event.
func (e *event) key() (string, error) {
	account := e.AccountID.String()
	if e.Account != nil && e.Account.ID != "" {
		account = e.Account.ID.String()
	}
	conversation := ""
	if e.Conversation != nil {
		conversation = e.Conversation.ID.String()
		if account == "" {
			account = e.Conversation.AccountID.String()
		}
	} else if e.Event == EventStatusChanged {
		conversation = e.ID.String()
	}
	if strings.TrimSpace(account) == "" {
		return "", &ingest.FieldError{Field: "account.id", Problem: "is required"}
	}
	return provider.Key("conversation.id", account, conversation)
}
