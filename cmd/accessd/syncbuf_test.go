package main

import "github.com/accessledger/accessledger/internal/syncbuf"

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer = syncbuf.Buffer
