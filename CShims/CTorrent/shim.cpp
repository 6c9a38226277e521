#include "CTorrent.h"
