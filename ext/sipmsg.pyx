# placeholder: replaced by the real codec in this session
