// The whole public API of actloss. Each header can also be included on its own.
#pragma once

#include <actloss/activation.h>
#include <actloss/bce.h>
#include <actloss/cross_entropy.h>
#include <actloss/half.h>
#include <actloss/linear_cross_entropy.h>
#include <actloss/mse.h>
#include <actloss/softmax.h>
#include <actloss/types.h>
