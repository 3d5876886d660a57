# Warnings are errors in our own C++ sources; CUDA sources get the host compiler's warnings too.
function(actloss_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Werror>)
endfunction()
