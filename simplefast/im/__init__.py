"""Page-mode instant messaging (issue #6): MESSAGE relay, offline store-and-forward,
CPIM / IMDN / isComposing handling, RFC 5365 multi-recipient MESSAGE. Sans-IO."""
