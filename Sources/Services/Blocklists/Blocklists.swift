// Blocklists module.
