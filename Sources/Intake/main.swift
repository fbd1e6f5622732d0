// local placeholder (untracked, wt-rpc only)
