#ifndef LIAISON_CLIBPQ_SHIM_H
#define LIAISON_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>
#endif
