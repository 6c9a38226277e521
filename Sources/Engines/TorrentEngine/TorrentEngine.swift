// TorrentEngine module.
