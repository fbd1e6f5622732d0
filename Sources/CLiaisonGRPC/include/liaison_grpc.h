int lgrpc_placeholder(void);
