// Facilitator module.
