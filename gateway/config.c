/* config.c: the one instance of the settings (filled by main.c's flag table). */
#include "config.h"

gw_config_t gw_cfg;
