//! plex: the playbook end to end through the real binary (filled with the plugin and playbook).
