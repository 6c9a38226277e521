// Requester module.
