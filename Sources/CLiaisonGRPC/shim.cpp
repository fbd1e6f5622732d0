#include "liaison_grpc.h"
int lgrpc_placeholder(void) { return 0; }
