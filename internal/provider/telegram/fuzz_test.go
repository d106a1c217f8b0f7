package telegram_test

import (
	"testing"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/telegram"
)

func FuzzParseTelegram(f *testing.F) {
	providertest.FuzzParse(f, "*.json", telegram.Parse,
		[]byte(`{"update_id":1,"callback_query":{"message":{"chat":{"id":"x"},"message_id":null},"data":""}}`))
}
