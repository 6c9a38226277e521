#include "cossl_tls.h"
