package engine

import "github.com/accessledger/accessledger/adapters/sqldb"

// KeysDB is keysDB for the tests.
func KeysDB(e *Engine) *sqldb.DB { return e.keysDB() }
