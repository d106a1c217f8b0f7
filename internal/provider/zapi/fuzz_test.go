package zapi_test

import (
	"testing"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/zapi"
)

func FuzzParseZAPI(f *testing.F) {
	providertest.FuzzParse(f, "*.json", zapi.Parse,
		[]byte(`{"type":"ReceivedCallback","instanceId":1,"phone":2,"messageId":3,"momment":"4","audio":{"seconds":"x"}}`))
}
