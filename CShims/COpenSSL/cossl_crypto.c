#include "cossl_crypto.h"
