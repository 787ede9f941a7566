"""The file backend: TTSCache and SyncTTSCache over a sharded directory."""
