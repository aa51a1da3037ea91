# Layers: the library layers under lib/ and the programs that use them.
#
# par_layer(<name> SOURCES <files> USES <layers> [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#   builds lib/<name> as the static library par_<name>, linked to the
#   libraries of the layers it USES and nothing else.
# par_program_core(<target> DIR <dir> SOURCES <files> USES <layers> ...)
#   the same for a program's own modules (everything but its main.c), so unit
#   tests can link them.
#
# Both register a build-time check (cmake/check_layers.cmake) over every .c
# and .h of the folder: an #include "<layer>/x.h" of a layer not in USES, an
# unprefixed include of a library header, or modules of the folder that
# include each other in a circle (directly or through a chain) fail the
# build with the files. The link lines and the check come from the same USES list, so
# they cannot disagree.

set(PAR_LAYERS base net obs msg store browser)

function(par_check_layers target dir)
  file(GLOB files CONFIGURE_DEPENDS ${dir}/*.c ${dir}/*.h)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${target}.layers)
  string(REPLACE ";" "," allow "${ARGN}")
  string(REPLACE ";" "," all "${PAR_LAYERS}")
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DDIR=${dir} -DALLOW=${allow} -DLAYERS=${all}
            -DSTAMP=${stamp} -P ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    COMMENT "Checking the includes of ${dir} against its layers")
  add_custom_target(${target}_layers DEPENDS ${stamp})
  add_dependencies(${target} ${target}_layers)
endfunction()

function(par_layer name)
  cmake_parse_arguments(A "" "" "SOURCES;USES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(uses)
  foreach(u ${A_USES})
    list(APPEND uses par_${u})
  endforeach()
  add_library(par_${name} STATIC ${A_SOURCES})
  target_include_directories(par_${name} PUBLIC ${PROJECT_SOURCE_DIR}/lib)
  target_link_libraries(par_${name} PUBLIC ${uses} ${A_PUBLIC_DEPS}
                        PRIVATE ${A_PRIVATE_DEPS})
  par_check_layers(par_${name} ${CMAKE_CURRENT_SOURCE_DIR}/${name} ${name}
                   ${A_USES})
endfunction()

function(par_program_core target)
  cmake_parse_arguments(A "" "" "SOURCES;USES;PUBLIC_DEPS" ${ARGN})
  set(uses)
  foreach(u ${A_USES})
    list(APPEND uses par_${u})
  endforeach()
  add_library(${target} STATIC ${A_SOURCES})
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC ${uses} ${A_PUBLIC_DEPS})
  par_check_layers(${target} ${CMAKE_CURRENT_SOURCE_DIR} ${A_USES})
endfunction()
