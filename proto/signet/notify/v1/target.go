package notifyv1

// AgentEntryID is the Notification.entry_ids value that asks an agent to
// renew its own agent SVID: the entry_id option of ENTRY_TARGET_AGENT in
// notify.proto (TestEntryTargets checks that the two agree).
const AgentEntryID = "@agent"
